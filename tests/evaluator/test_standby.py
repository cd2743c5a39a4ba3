"""Replicas of one shard: one holds the shard's Lease and evaluates, the others stand by.

Two `klaxon evaluator` loops for the same shard against the emulated API and a real Prometheus.
The standby is alive and ready (a rollout can replace pods one by one), writes nothing and
forwards events to the leader; when the leader stops it releases the Lease, the standby takes
over and carries on. Events go to shard 0 only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from evaluator.helpers import MIN, T0, minutes, run_loop
from klaxon.api.constants import LEADER_ADDRESS_ANNOTATION
from klaxon.cli.main import build_parser
from klaxon.evaluator.server import CycleHealth
from klaxon.kube.client import KubeClient
from klaxon.kube.lease import LeaderElector
from kube_harness import wait_for
from support.prometheus import free_port

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"
LEASES = "coordination.k8s.io/v1/leases"
LEASE = "klaxon-eval-main-0"


def setup(kube: Any, prom_url: str, **spec: Any) -> None:
    kube.create_object(
        AC,
        {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertConfig", "metadata": {"name": "main"},
         "spec": {"prometheus": {"url": prom_url}, **spec}},
        namespace="mon",
    )
    kube.create_object(
        AR,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertRule",
            "metadata": {"name": "hot"},
            "spec": {
                "configRef": {"name": "main"},
                "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
                "condition": {"operator": "gt", "threshold": 80},
                "evaluation": {"engine": "evaluator", "interval": "1m"},
            },
        },
        namespace="mon",
    )


def with_event_token(kube: Any, prometheus_server: Any) -> Any:
    """A Prometheus with a little data, and the Secret holding the event token ("secret")."""
    kube.create_object(
        "v1/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ev"}, "data": {"token": "c2VjcmV0"}},
        namespace="mon",
    )
    return prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 10 * MIN, 1.0))])


def elector(kube_api: Any, identity: str, address: str = "") -> LeaderElector:
    return LeaderElector(
        KubeClient(kube_api), "mon", LEASE, identity, duration=2.0, renew=0.1, retry=0.1, deadline=1.0,
        annotations={LEADER_ADDRESS_ANNOTATION: address} if address else {},
    )


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status


async def serving(url: str) -> bool:
    try:
        await status_of(url)
    except aiohttp.ClientError:
        return False
    return True


async def _poll_until_leading(url: str, kube: Any, refused: list[float]) -> None:
    """Ask `url` every 10 ms until a second after pod-b holds the Lease; note each refused connection."""
    loop = asyncio.get_running_loop()
    until: float | None = None
    while until is None or loop.time() < until:
        if until is None and holder(kube) == "pod-b":
            until = loop.time() + 1.0
        if not await serving(url):
            refused.append(loop.time())
        await asyncio.sleep(0.01)


def holder(kube: Any) -> str | None:
    return ((kube.get_object(LEASES, LEASE, "mon") or {}).get("spec") or {}).get("holderIdentity")


async def test_one_replica_evaluates_the_other_stands_by_and_takes_over(
    kube, kube_api, prometheus_server, monkeypatch, tmp_path
) -> None:
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 180 * MIN, 95.0))])
    setup(kube, prom.url)
    clock = {"t": T0 + 60 * MIN}
    ports = {"a": free_port(), "b": free_port()}
    stops = {"a": asyncio.Event(), "b": asyncio.Event()}

    def start(who: str) -> asyncio.Task[int]:
        args = build_parser().parse_args(
            ["evaluator", "--config", "mon/main", "--tick", "0.05", "--metrics-port", str(ports[who]),
             "--state-dir", str(tmp_path / who)]
        )
        return asyncio.create_task(run_loop(
            args, kube_api, stops[who], elector=elector(kube_api, f"pod-{who}"), clock=lambda: clock["t"]
        ))

    a = start("a")
    await wait_for(lambda: holder(kube) == "pod-a", timeout=10)
    b = start("b")
    try:
        state = lambda: ((kube.get_object(AR, "hot", "mon") or {}).get("status") or {}).get("state")  # noqa: E731
        await wait_for(
            lambda: state() == "Firing" or a.done(), timeout=10, message=lambda: f"{state()} {a.done() and a.result()}"
        )
        base_b = f"http://127.0.0.1:{ports['b']}"
        await wait_for(lambda: serving(f"{base_b}/healthz"), timeout=5)
        assert await status_of(f"{base_b}/readyz") == 200  # a standby is ready (rollouts progress)
        assert await status_of(f"{base_b}/healthz") == 200
        assert await status_of(f"http://127.0.0.1:{ports['a']}/readyz") == 200
        assert not b.done() and holder(kube) == "pod-a"

        # the standby never wrote: only pod-a's status writes exist (one writer at a time)
        writes_before = len(kube.requests("PATCH", AR, subresource="status"))
        refused: list[float] = []
        polling = asyncio.create_task(_poll_until_leading(f"{base_b}/healthz", kube, refused))
        stops["a"].set()
        assert await asyncio.wait_for(a, 10) == 0
        await wait_for(lambda: holder(kube) == "pod-b", timeout=10)
        await asyncio.wait_for(polling, 15)
        assert refused == []  # one server from standby to leader: no gap in /healthz or POST /v1/events
        assert await status_of(f"{base_b}/readyz") == 200
        kube.patch_object(AR, "hot", {"spec": {"condition": {"threshold": 99}}}, namespace="mon")
        clock["t"] += MIN  # pod-b sees the change and resolves the rule
        await wait_for(lambda: state() not in ("Firing", None), timeout=10, message=lambda: f"{state()}")
        assert len(kube.requests("PATCH", AR, subresource="status")) > writes_before
    finally:
        for s in stops.values():
            s.set()
        await asyncio.wait_for(asyncio.gather(a, b, return_exceptions=True), 10)
    lease = kube.get_object(LEASES, LEASE, "mon")
    assert lease["spec"]["leaseTransitions"] >= 1
    # owned by the AlertConfig: deleting it takes the Lease along (no leftovers)
    config_uid = kube.get_object(AC, "main", "mon")["metadata"]["uid"]
    assert [r["uid"] for r in lease["metadata"]["ownerReferences"]] == [config_uid]
    kube.delete_object(AC, "main", "mon")
    assert kube.get_object(LEASES, LEASE, "mon") is None


async def test_event_ingestion_runs_on_shard_zero_only(kube, kube_api, prometheus_server, tmp_path) -> None:
    prom = with_event_token(kube, prometheus_server)
    setup(kube, prom.url, events={"token": {"name": "ev", "key": "token"}}, evaluator={"shards": 2})
    answers = {}
    for shard in ("0/2", "1/2"):
        port, stop = free_port(), asyncio.Event()
        args = build_parser().parse_args(
            ["evaluator", "--config", "mon/main", "--shard", shard, "--tick", "0.05", "--metrics-port", str(port),
             "--state-dir", str(tmp_path / shard.replace("/", "-"))]
        )
        task = asyncio.create_task(run_loop(args, kube_api, stop, clock=time.time))
        try:
            await wait_for(lambda: serving(f"http://127.0.0.1:{port}/healthz"), timeout=10)  # noqa: B023
            async with aiohttp.ClientSession() as s, s.post(
                f"http://127.0.0.1:{port}/v1/events",
                json={"id": "e1", "timestamp": "2026-01-01T00:00:00Z"},
                headers={"Authorization": "Bearer secret"},
            ) as r:
                answers[shard] = r.status
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) == 0
    assert answers == {"0/2": 202, "1/2": 404}
    # shard 0 keeps its event state in its state dir across restarts; shard 1 has none
    assert (tmp_path / "0-2" / "events-state.json").exists()
    assert not (tmp_path / "1-2" / "events-state.json").exists()


def test_a_standby_stays_alive_and_a_new_leader_starts_fresh(monkeypatch) -> None:
    """Liveness must not restart a standby that waited longer than the staleness limit, and the
    replica that takes over gets the full limit for its first cycle."""
    now = {"t": 1000.0}
    health = CycleHealth(stale_s=60, monotonic=lambda: now["t"])
    health.leading = False
    now["t"] += 3600  # an hour as a standby
    assert health.ok()
    health.lead()
    assert health.ok()
    now["t"] += 61  # no cycle finished within the limit: stale now
    assert not health.ok()


async def test_a_standby_forwards_events_to_the_leader(kube, kube_api, prometheus_server, tmp_path) -> None:
    prom = with_event_token(kube, prometheus_server)
    setup(kube, prom.url, events={"token": {"name": "ev", "key": "token"}})
    ports = {"a": free_port(), "b": free_port()}
    stop = asyncio.Event()
    tasks = {}

    def start(who: str) -> asyncio.Task[int]:
        args = build_parser().parse_args(
            ["evaluator", "--config", "mon/main", "--tick", "0.05", "--metrics-port", str(ports[who]),
             "--state-dir", str(tmp_path / who)]
        )
        return asyncio.create_task(
            run_loop(args, kube_api, stop, elector=elector(kube_api, f"pod-{who}", f"127.0.0.1:{ports[who]}"),
                     clock=time.time)
        )

    async def post(who: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.post(
            f"http://127.0.0.1:{ports[who]}/v1/events",
            json=[{"id": "e1", "timestamp": "2026-01-01T00:00:00Z"}],
            headers={"Authorization": "Bearer secret"},
        ) as r:
            return r.status, await r.json()

    tasks["a"] = start("a")
    await wait_for(lambda: holder(kube) == "pod-a", timeout=10)
    tasks["b"] = start("b")
    try:
        await wait_for(lambda: serving(f"http://127.0.0.1:{ports['a']}/healthz"), timeout=10)
        await wait_for(lambda: serving(f"http://127.0.0.1:{ports['b']}/healthz"), timeout=10)
        assert await post("b") == (202, {"accepted": 1, "duplicates": 0})  # through the standby ...
        assert await post("a") == (202, {"accepted": 0, "duplicates": 1})  # ... into the leader's service
        status, body = await post("b")
        assert (status, body["duplicates"]) == (202, 1)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values(), return_exceptions=True), 10)


async def test_a_standby_cancelled_while_it_waits_frees_its_port(kube, kube_api, prometheus_server, tmp_path) -> None:
    """A standby stopped by cancellation (not by its stop flag) closes the server it stood by with."""
    prom = prometheus_server()
    setup(kube, prom.url)
    ports = {"a": free_port(), "b": free_port()}
    stop = asyncio.Event()

    def start(who: str) -> asyncio.Task[int]:
        args = build_parser().parse_args(
            ["evaluator", "--config", "mon/main", "--tick", "0.05", "--metrics-port", str(ports[who]),
             "--state-dir", str(tmp_path / who)]
        )
        loop = run_loop(args, kube_api, stop, elector=elector(kube_api, f"pod-{who}"), clock=time.time)
        return asyncio.create_task(loop)

    leader = start("a")
    await wait_for(lambda: holder(kube) == "pod-a", timeout=10)
    standby = start("b")
    try:
        await wait_for(lambda: serving(f"http://127.0.0.1:{ports['b']}/healthz"), timeout=10)
        standby.cancel()
        await asyncio.gather(standby, return_exceptions=True)
        assert holder(kube) == "pod-a"
        assert not await serving(f"http://127.0.0.1:{ports['b']}/healthz")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(leader, standby, return_exceptions=True), 10)
