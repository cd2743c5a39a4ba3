"""kopf at startup: index waiters are woken when the set's state flips, not per object; watched
bodies come without managedFields."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching
from kopf._core.reactor import queueing

from klaxon.operator.kopf_fixes import drop_managed_fields, wake_toggle_waiters_on_flip, without_managed_fields


async def test_waiters_wake_when_the_last_object_is_indexed_not_per_object() -> None:
    wake_toggle_waiters_on_flip()
    indexed = aiotoggles.ToggleSet(all)
    objects = [await indexed.make_toggle(name=f"rule-{i}") for i in range(300)]
    notified = 0
    notify_all = indexed._condition.notify_all

    def counting() -> None:
        nonlocal notified
        notified += 1
        notify_all()

    indexed._condition.notify_all = counting  # type: ignore[method-assign]
    waiters = [asyncio.create_task(indexed.wait_for(True)) for _ in range(300)]
    for toggle in objects[:-1]:
        await indexed.drop_toggle(toggle)
    await asyncio.sleep(0)
    assert notified == 0 and not any(w.done() for w in waiters)
    late = await indexed.make_toggle(name="late")  # still off: nothing to tell
    await indexed.drop_toggles([objects[-1]])
    assert notified == 0
    await indexed.drop_toggle(late)
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert notified == 1
    # a member toggle's own waiters still hear it turning
    member = await indexed.make_toggle(name="member")
    waiting = asyncio.create_task(member.wait_for(True))
    await asyncio.sleep(0)
    await member.turn_to(True)
    await asyncio.wait_for(waiting, 5)


def rule_body(version: str) -> dict[str, Any]:
    """An AlertRule as the API server sends it (the managedFields shape of a v1.36 server)."""
    fields = {"f:status": {".": {}, "f:conditions": {".": {}, 'k:{"type":"Ready"}': {".": {}, "f:status": {}}}}}
    return {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {
            "name": "r1",
            "namespace": "team",
            "uid": "u1",
            "resourceVersion": version,
            "managedFields": [
                {"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}},
                {"manager": "klaxon-operator", "operation": "Update", "subresource": "status", "fieldsV1": fields},
            ],
        },
        "spec": {"query": {"metric": "up"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


async def test_watched_objects_lose_managed_fields_and_nothing_else() -> None:
    events: list[Any] = [
        {"type": None, "object": rule_body("1")},
        watching.Bookmark.LISTED,
        {"type": "MODIFIED", "object": rule_body("2")},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}},
    ]
    expected = copy.deepcopy(events)
    for event in expected[0], expected[2]:
        del event["object"]["metadata"]["managedFields"]

    async def source() -> AsyncIterator[Any]:
        for event in events:
            yield event

    assert [e async for e in without_managed_fields(source())] == expected


def test_the_watch_kopf_uses_is_the_one_without_managed_fields() -> None:
    drop_managed_fields()
    patched = watching.infinite_watch
    drop_managed_fields()  # once only
    assert watching.infinite_watch is patched and getattr(patched, "_klaxon_patched", False)
    assert queueing.watching.infinite_watch is patched  # what kopf's per-resource watcher calls
