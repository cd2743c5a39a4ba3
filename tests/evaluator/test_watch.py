"""`klaxon evaluator` follows its rules by watch (emulated Kubernetes API + real Prometheus).

One list at start, then watch events only: a new rule gets a status, a changed one is
re-evaluated, a deleted firing rule is resolved (notified), rules of namespaces the AlertConfig
does not allow and rules of other configs are left alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from evaluator.helpers import MIN, T0, Recorder, minutes, run_loop
from klaxon.cli.main import build_parser
from klaxon.evaluator.notifying import NotifyingAdapter

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"


def ar(name: str, threshold: float = 80, config: str = "main", config_ns: str | None = "mon") -> dict:
    ref: dict[str, Any] = {"name": config}
    if config_ns is not None:
        ref["namespace"] = config_ns
    return {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": name},
        "spec": {
            "configRef": ref,
            "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
            "condition": {"operator": "gt", "threshold": threshold},
            "evaluation": {"engine": "evaluator", "interval": "1m"},
        },
    }


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def state(kube: Any, name: str, ns: str) -> str | None:
    obj = kube.get_object(AR, name, ns) or {}
    return (obj.get("status") or {}).get("state")


async def test_rules_are_followed_by_watch_not_relisted(
    kube, kube_api, prometheus_server, monkeypatch, tmp_path
) -> None:
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 180 * MIN, 95.0))])
    kube.create_object(
        AC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertConfig",
            "metadata": {"name": "main"},
            "spec": {"prometheus": {"url": prom.url}, "allowedNamespaces": ["team"]},
        },
        namespace="mon",
    )
    kube.create_object(AR, ar("first"), namespace="mon")

    clock = {"t": T0 + 60 * MIN}
    args = build_parser().parse_args(
        ["evaluator", "--config", "mon/main", "--tick", "0.05", "--metrics-port", "0", "--state-dir", str(tmp_path)]
    )
    stop = asyncio.Event()
    rec = Recorder()

    class RecordingAdapter(NotifyingAdapter):
        """The real adapter (and Notifier), also keeping what the evaluator hands it."""

        async def handle(self, notification: Any) -> None:
            await rec.handle(notification)
            await super().handle(notification)

    task = asyncio.create_task(run_loop(args, kube_api, stop, clock=lambda: clock["t"], adapter=RecordingAdapter))
    try:
        await until(lambda: state(kube, "first", "mon") == "Firing")

        # new rules arrive by watch: allowed namespace yes, other namespace / other config no
        kube.create_object(AR, ar("second"), namespace="team")
        kube.create_object(AR, ar("outsider"), namespace="elsewhere")
        kube.create_object(AR, ar("foreign", config="other"), namespace="mon")
        clock["t"] += MIN
        await until(lambda: state(kube, "second", "team") == "Firing")

        # a change of the spec is picked up (threshold above the data: resolves)
        kube.patch_object(AR, "first", {"spec": {"condition": {"threshold": 99}}}, namespace="mon")
        clock["t"] += MIN
        await until(lambda: state(kube, "first", "mon") == "Inactive")

        # a deleted firing rule resolves instead of silently dropping its alarm
        kube.delete_object(AR, "second", namespace="team")
        clock["t"] += MIN
        await until(lambda: any(n.rule.name == "second" and n.transition.to_state == "Inactive" for n in rec.seen))
        (gone,) = [n for n in rec.seen if n.rule.name == "second" and n.transition.to_state == "Inactive"]
        assert gone.transition.reason == "RuleDeleted" and gone.transition.notify

        for _ in range(5):  # more ticks: still one list, the rest came by watch
            clock["t"] += MIN
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    # one list per namespace the config covers (its own and "team"), never cluster-wide; then watches
    lists = [r for r in kube.requests("GET", AR, name=None) if r.query.get("watch") not in ("true", "1")]
    assert sorted(r.namespace for r in lists) == ["mon", "team"], [r.path for r in lists]
    watches = [r for r in kube.requests("GET", AR, name=None) if r.query.get("watch") in ("true", "1")]
    assert {r.namespace for r in watches} == {"mon", "team"}
    assert state(kube, "outsider", "elsewhere") is None
    assert state(kube, "foreign", "mon") is None
    assert {(n.rule.name, n.transition.to_state) for n in rec.seen} >= {
        ("first", "Firing"),
        ("second", "Firing"),
        ("first", "Inactive"),
    }


async def test_two_shard_processes_split_rules_without_overlap_or_gap(
    kube, kube_api, prometheus_server, monkeypatch, tmp_path
) -> None:
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 180 * MIN, 95.0))])
    kube.create_object(
        AC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertConfig",
            "metadata": {"name": "main"},
            "spec": {"prometheus": {"url": prom.url}},
        },
        namespace="mon",
    )
    names = [f"r{i}" for i in range(24)]  # random uids: both shards empty-handed has p = 2^-23
    for n in names:
        kube.create_object(AR, ar(n), namespace="mon")

    written: dict[str, set[str]] = {}
    for shard in ("0/2", "1/2"):
        before = len(kube.requests("PATCH", AR, subresource="status"))
        args = build_parser().parse_args(
            [
                *("evaluator", "--config", "mon/main", "--shard", shard, "--once", "--metrics-port", "0"),
                *("--state-dir", str(tmp_path / shard.replace("/", "-"))),
            ]
        )
        assert await run_loop(args, kube_api, asyncio.Event(), clock=lambda: T0 + 60 * MIN) == 0
        written[shard] = {str(r.name) for r in kube.requests("PATCH", AR, subresource="status")[before:]}
    assert written["0/2"] and written["1/2"]
    assert written["0/2"].isdisjoint(written["1/2"])
    assert written["0/2"] | written["1/2"] == set(names)
    assert all(state(kube, n, "mon") == "Firing" for n in names)


async def test_a_namespace_that_cannot_be_listed_yet_neither_stops_the_evaluator_nor_drops_rules(
    kube, kube_api, prometheus_server, monkeypatch, tmp_path
) -> None:
    """A listed namespace whose Role is not there yet (403): the evaluator runs on with the other
    namespaces, retries that one with backoff and picks its rules up once it can read them."""
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 180 * MIN, 95.0))])
    kube.create_object(
        AC,
        {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertConfig", "metadata": {"name": "main"},
         "spec": {"prometheus": {"url": prom.url}, "allowedNamespaces": ["team"]}},
        namespace="mon",
    )
    kube.create_object(AR, ar("first"), namespace="mon")
    kube.create_object(AR, ar("second"), namespace="team")
    kube.inject_error(403, method="GET", resource=AR, namespace="team", times=3)

    args = build_parser().parse_args(
        ["evaluator", "--config", "mon/main", "--tick", "0.05", "--metrics-port", "0", "--state-dir", str(tmp_path)]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_loop(args, kube_api, stop, clock=lambda: T0 + 60 * MIN))
    try:
        await until(lambda: state(kube, "first", "mon") == "Firing")
        assert not task.done()
        await until(lambda: state(kube, "second", "team") == "Firing", timeout=15)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    refused = [r for r in kube.requests("GET", AR) if r.namespace == "team" and r.status == 403]
    assert len(refused) == 3
    kube.log[:] = [r for r in kube.log if r.status != 403]
