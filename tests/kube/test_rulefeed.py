"""The AlertConfig's rule feed (``klaxon.kube.rulefeed``) against the emulated API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from klaxon.kube.client import KubeClient
from klaxon.kube.rulefeed import RuleFeed

AR = "klaxon.dev/v1alpha1/alertrules"


def rule(name: str, config: str = "main") -> dict[str, Any]:
    return {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": name},
        "spec": {"configRef": {"name": config}, "query": {"metric": "m"}, "condition": {"threshold": 1}},
    }


async def test_a_follower_that_crashes_ends_the_feed_with_its_error(kube: Any, kube_api: Any) -> None:
    """A bug in following a namespace is never swallowed: ``run`` raises it."""

    class Broken(RuleFeed):
        async def _follow(self, namespace: str) -> None:
            if namespace == "b":
                raise RuntimeError("a bug while following b")
            await asyncio.Event().wait()

    feed = Broken(KubeClient(kube_api), "a", "main", ["a", "b"])
    with pytest.raises(RuntimeError, match="following b"):
        await asyncio.wait_for(feed.run(), 5)


async def test_lists_then_watches_this_configs_rules_only(
    kube: Any, kube_api: Any
) -> None:
    kube.create_object(AR, rule("one"), namespace="a")
    kube.create_object(AR, rule("other", config="else"), namespace="a")
    feed = RuleFeed(KubeClient(kube_api), "a", "main", ["a"], backoff=0.05)
    assert [o["metadata"]["name"] for o in await feed.relist()] == ["one"]
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.sleep(0.2)
        kube.create_object(AR, rule("two"), namespace="a")
        kube.patch_object(AR, "one", {"spec": {"configRef": {"name": "else"}}}, namespace="a")
        seen: list[tuple[str, str]] = []
        for _ in range(100):
            seen += [(kind, obj["metadata"]["name"]) for kind, obj in feed.drain() if kind != "SYNC"]
            if ("MOVED", "one") in seen:
                break
            await asyncio.sleep(0.02)
        assert ("ADDED", "two") in seen and ("MOVED", "one") in seen
        assert [o["metadata"]["name"] for o in feed.snapshot()] == ["two"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
