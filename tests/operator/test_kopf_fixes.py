"""kopf's index readiness at startup: waiters are woken when the set's state flips, not per object."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from klaxon.operator.kopf_fixes import wake_toggle_waiters_on_flip


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
