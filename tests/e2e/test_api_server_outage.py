"""The API server dies (SIGKILL) and comes back (the same command line) under a running ``klaxon
operator`` and ``klaxon evaluator``: idle, in the middle of a reconcile, during a burst of 500
creates; and kopf's machinery failing for good. On a control plane of the test's own
(e2e/controlplane.py), never the shared ``--kubeconfig`` cluster.

The bar (issue 16): an edit made once the server is back lands within 15 s of its return; a
burst converges with exactly one PrometheusRule per rule and no traceback; a fatal failure of
kopf ends the process (non-zero) with /healthz 500 at once, never an idle process that looks up.
Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from e2e.controlplane import ControlPlane, control_plane
from e2e.procs import Proc, _get, evaluator_process, operator_process, webhook_certs
from e2e.scenario import Body, KubeClient, KubeError, Ref, eventually, install_crds, namespaces, rule_ref
from klaxon.kube.client import NO_RETRY
from support.prometheus import free_port, prometheus_server  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

KLAXON = "klaxon.dev/v1alpha1"
PROMRULES = "monitoring.coreos.com/v1"
#: An edit made after the server's return lands within this long (the acceptance).
LANDS_WITHIN_S = 15.0
#: Outages longer than the operator's renew deadline (10 s) and lease (15 s): the Lease is lost.
OUTAGE_S = 20.0
#: Rounds per case: 1 in the suite (each round is a 20 s outage); the figures in docs/testing.md
#: were measured with KLAXON_OUTAGE_ROUNDS=3.
REPEATS = int(os.environ.get("KLAXON_OUTAGE_ROUNDS", "1"))
NO_LEADER_ELECTION = {"KLAXON_LEADER_ELECTION": "false"}


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with control_plane() as cp:
        yield cp


@asynccontextmanager
async def client(plane: ControlPlane, **kwargs: Any) -> AsyncIterator[KubeClient]:
    kube = await KubeClient.connect(kubeconfig=plane.kubeconfig)
    for key, value in kwargs.items():
        setattr(kube, key, value)
    try:
        yield kube
    finally:
        await kube.close()


def unique(prefix: str = "outage") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def config(ns: str, **spec: Any) -> Body:
    return {
        "apiVersion": KLAXON,
        "kind": "AlertConfig",
        "metadata": {"name": "default", "namespace": ns},
        "spec": {"prometheus": {"url": "http://prometheus.invalid:9090"}, **spec},
    }


def rule(ns: str, name: str, threshold: int) -> Body:
    return {
        "apiVersion": KLAXON,
        "kind": "AlertRule",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "query": {"metric": "cpu_usage", "window": "5m"},
            "condition": {"type": "threshold", "operator": "gt", "threshold": threshold},
        },
    }


async def thresholds(kube: KubeClient, ns: str) -> dict[str, set[int]]:
    """Per owning AlertRule, the thresholds its PrometheusRules compare against."""
    found: dict[str, set[int]] = {}
    for pr in await kube.list(Ref(PROMRULES, "prometheusrules", ns)):
        owner = next(o["name"] for o in pr["metadata"]["ownerReferences"] if o.get("controller"))
        exprs = " ".join(r.get("expr", "") for g in pr["spec"]["groups"] for r in g["rules"])
        found.setdefault(owner, set()).update(int(float(m)) for m in re.findall(r"> ([0-9.]+)", exprs))
    return found


async def landed(kube: KubeClient, ns: str, want: dict[str, int]) -> bool:
    found = await thresholds(kube, ns)
    return all(found.get(name) == {value} for name, value in want.items())


async def first_rules(kube: KubeClient, ns: str, names: list[str]) -> None:
    """The config and the rules (threshold 500), each with its PrometheusRule."""
    await kube.create(config(ns))
    for name in names:
        await kube.create(rule(ns, name, 500))
    await eventually(lambda: landed(kube, ns, dict.fromkeys(names, 500)), 60, "the first PrometheusRules")


async def edit(kube: KubeClient, ns: str, want: dict[str, int]) -> None:
    await asyncio.gather(
        *(kube.merge_patch(rule_ref(ns, n), {"spec": {"condition": {"threshold": t}}}) for n, t in want.items())
    )


async def outage(plane: ControlPlane, seconds: float) -> tuple[float, float]:
    """Kill the API server, start it again ``seconds`` later; (killed, ready) in time.monotonic()."""
    killed = await asyncio.to_thread(plane.kill_apiserver)
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - killed)))
    plane.start_apiserver()
    ready = await asyncio.to_thread(plane.wait_ready)
    return killed, ready


def healthz(proc: Proc) -> int:
    return _get(f"http://127.0.0.1:{proc.ports['health']}/healthz")


def check_process(proc: Proc) -> None:
    assert proc.alive(), f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()[-4000:]}"
    out = proc.output()
    at = out.find("Traceback")
    assert at < 0, out[max(0, at - 2000) : at + 5000]


async def test_idle_operator_leads_again_and_edits_land_soon_after_the_server_returns(
    plane: ControlPlane, tmp_path: Path
) -> None:
    """Leader election on (the CLI's default): a 20 s outage loses the Lease; the operator stops
    kopf, stands by in the same process and leads again once the server is back."""
    ns = unique()
    names = [f"r{i}" for i in range(5)]
    figures: list[str] = []
    async with client(plane) as kube:
        await install_crds(kube)
        async with namespaces(kube, ns), operator_process(plane.kubeconfig, (ns,), tmp_path) as op:
            try:
                await first_rules(kube, ns, names)
                latencies = []
                for rep in range(REPEATS):
                    killed, ready = await outage(plane, OUTAGE_S)
                    want = {n: 600 + 10 * rep + i for i, n in enumerate(names)}
                    await edit(kube, ns, want)
                    await eventually(lambda want=want: landed(kube, ns, want), 60, f"edits of round {rep}", 0.1)
                    latencies.append(time.monotonic() - ready)
                    figures.append(
                        f"round {rep}: down {ready - killed:.1f} s (killed to ready), edits landed "
                        f"{latencies[-1]:.1f} s after ready"
                    )
                    check_process(op)
                assert max(latencies) <= LANDS_WITHIN_S, figures
                assert op.output().count("The Lease was lost") == REPEATS, op.output()[-4000:]
                assert healthz(op) == 200
            except BaseException:
                print(op.output()[-8000:])
                raise
    print("\nidle, leader election on, 20 s outages:\n  " + "\n  ".join(figures))


async def test_a_reconcile_cut_by_the_outage_does_not_hold_back_edits_made_after_it(
    plane: ControlPlane, tmp_path: Path
) -> None:
    """No leader election (the chart's default): kopf rides the outage out. Five edits, the
    server killed as the first lands, back 20 s later, five edits again: they land within 15 s."""
    ns = unique()
    names = [f"r{i}" for i in range(5)]
    figures: list[str] = []
    cut = 0
    async with client(plane) as kube, client(plane, retry=NO_RETRY) as once:
        await install_crds(kube)
        async with (
            namespaces(kube, ns),
            operator_process(plane.kubeconfig, (ns,), tmp_path, env=NO_LEADER_ELECTION) as op,
        ):
            try:
                await first_rules(kube, ns, names)
                latencies = []
                for rep in range(max(REPEATS, 3)):
                    if rep >= REPEATS and cut:
                        break  # (more rounds only until one outage did cut a reconcile off)
                    before = len(op.output())
                    first = {n: 700 + 10 * rep + i for i, n in enumerate(names)}
                    sent = [
                        asyncio.create_task(
                            once.merge_patch(rule_ref(ns, n), {"spec": {"condition": {"threshold": t}}})
                        )
                        for n, t in first.items()
                    ]
                    await asyncio.wait(sent, return_when=asyncio.FIRST_COMPLETED)
                    killed = await asyncio.to_thread(plane.kill_apiserver)  # as the first edit lands
                    results = await asyncio.gather(*sent, return_exceptions=True)
                    accepted = sum(not isinstance(r, BaseException) for r in results)
                    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))
                    plane.start_apiserver()
                    ready = await asyncio.to_thread(plane.wait_ready)
                    want = {n: 800 + 10 * rep + i for i, n in enumerate(names)}
                    await edit(kube, ns, want)
                    await eventually(lambda want=want: landed(kube, ns, want), 60, f"edits of round {rep}", 0.1)
                    latencies.append(time.monotonic() - ready)
                    during = op.output()[before:]
                    cut_now = len(CUT_OFF.findall(during))
                    cut += cut_now
                    figures.append(
                        f"round {rep}: {accepted}/5 first edits accepted before the kill, {cut_now} reconciles "
                        f"cut off, down {ready - killed:.1f} s, edits landed {latencies[-1]:.1f} s after ready"
                    )
                    check_process(op)
                    assert all(isinstance(r, KubeError) for r in results if isinstance(r, BaseException)), results
                assert max(latencies) <= LANDS_WITHIN_S, figures
                assert cut >= 1, f"no reconcile was in flight when the server died: {figures}"
            except BaseException:
                print(op.output()[-8000:])
                raise
    print("\nmid-reconcile, no leader election, 20 s outages:\n  " + "\n  ".join(figures))


#: A reconcile the outage cut off, as the operator logs it (a rule's kick retried soon, or a
#: config's or channel's kopf handler failing temporarily).
CUT_OFF = re.compile(r"(?:; again in [0-9.]+ s\.|failed temporarily: 503 ServiceUnavailable: the API server could not)")


BURST = 500
KILL_AFTER = 150
BURST_OUTAGE_S = 15.0


async def test_a_burst_of_creates_converges_across_an_outage(plane: ControlPlane, tmp_path: Path) -> None:
    """500 AlertRules created 20 at a time; the server killed after 150, back 15 s later; the
    creates resume. The operator reconciles again within 15 s of the server's return (no backoff
    holds it back); every rule converges to exactly one PrometheusRule; no traceback. (How soon
    the rules created before the kill are all reconciled is printed, not bounded: they queue
    with the 350 creates made after the return, so it measures throughput on this machine.)"""
    figures: list[str] = []
    async with client(plane) as kube:
        await install_crds(kube)
        for rep in range(REPEATS):
            ns = unique(f"burst{rep}")
            workdir = tmp_path / f"rep{rep}"
            workdir.mkdir()
            async with namespaces(kube, ns), operator_process(plane.kubeconfig, (ns,), workdir) as op:
                try:
                    await kube.create(config(ns))
                    figures.append(f"round {rep}: " + await burst(plane, kube, ns, op))
                    check_process(op)
                except BaseException:
                    print(op.output()[-8000:])
                    raise
    print(f"\nburst of {BURST} creates, leader election on, {BURST_OUTAGE_S:.0f} s outage:\n  " + "\n  ".join(figures))


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d [\d:]{8},\d{3}) INFO kopf\.objects: Handler 'reconcile' succeeded", re.M)


def first_reconcile_after(op: Proc, wall: float) -> float | None:
    """time.time() of the first successful reconcile the operator logged after ``wall``."""
    for match in LOG_TIME.finditer(op.output()):
        at = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local, as logged
        if at >= wall:
            return at
    return None


async def burst(plane: ControlPlane, kube: KubeClient, ns: str, op: Proc) -> str:
    """Create BURST rules, with an outage after KILL_AFTER of them; wait for convergence."""
    names = [f"b{i:03d}" for i in range(BURST)]
    created: set[str] = set()
    failures = 0
    all_created = 0.0

    async def creator(mine: list[str]) -> None:
        nonlocal failures, all_created
        for name in mine:
            while name not in created:
                try:
                    await kube.create(rule(ns, name, 500))
                    created.add(name)
                except KubeError as exc:
                    if exc.status == 409:  # a create the server took before it died
                        created.add(name)
                    else:
                        failures += 1
                        await asyncio.sleep(0.5)
        all_created = max(all_created, time.monotonic())

    async def enough() -> bool:
        return len(created) >= KILL_AFTER

    def reconciled(r: Body) -> bool:
        status = r.get("status") or {}
        return bool(status.get("observedGeneration") == r["metadata"]["generation"] and status.get("prometheusRuleRef"))

    async def done_names() -> set[str]:
        return {r["metadata"]["name"] for r in await kube.list(Ref(KLAXON, "alertrules", ns)) if reconciled(r)}

    async def settled(wanted: set[str]) -> bool:
        return wanted <= await done_names()

    async def converged() -> bool:
        rules = await kube.list(Ref(KLAXON, "alertrules", ns))
        prs = await kube.list(Ref(PROMRULES, "prometheusrules", ns))
        uids = {r["metadata"]["uid"] for r in rules}
        owners = [o["uid"] for p in prs for o in p["metadata"]["ownerReferences"]]
        done = [r for r in rules if reconciled(r)]
        return len(rules) == len(done) == BURST and sorted(owners) == sorted(uids)

    started = time.monotonic()
    creators = [asyncio.create_task(creator(names[i::20])) for i in range(20)]
    await eventually(enough, 120, f"{KILL_AFTER} creates", 0.02)
    before = set(created)  # their reconciles were queued, running or done when the server died
    killed = await asyncio.to_thread(plane.kill_apiserver)
    await asyncio.sleep(max(0.0, BURST_OUTAGE_S - (time.monotonic() - killed)))
    started_wall = time.time()  # no reconcile can succeed between the kill and this
    plane.start_apiserver()
    ready = await asyncio.to_thread(plane.wait_ready)
    ready_wall = time.time() - (time.monotonic() - ready)

    async def progress() -> float | None:
        # From the operator's log: this test's own lists of 500 rules lag on a loaded machine.
        return first_reconcile_after(op, started_wall)

    # No backoff holds the operator back once the server is back: it reconciles again soon. (It
    # may be at work before /readyz says ok: then the figure is negative.)
    resumed = await eventually(progress, 60, "a reconcile after the server's return", 0.1) - ready_wall
    assert resumed <= LANDS_WITHIN_S, f"the first reconcile came {resumed:.1f} s after the server was ready"
    await eventually(lambda: settled(before), 120, f"the {len(before)} rules created before the kill", 0.25)
    cut_settled = time.monotonic() - ready
    await asyncio.gather(*creators)
    await eventually(converged, 240, f"{BURST} rules, one PrometheusRule each", 0.5)
    done = time.monotonic()
    prs = await kube.list(Ref(PROMRULES, "prometheusrules", ns))
    assert len(prs) == BURST
    return (
        f"killed {killed - started:.1f} s into the burst, down {ready - killed:.1f} s; after ready: reconciling "
        f"again in {resumed:.1f} s, the {len(before)} rules created before the kill reconciled in "
        f"{cut_settled:.1f} s, all created in {all_created - ready:.1f} s ({failures} failed creates retried), "
        f"converged in {done - ready:.1f} s ({len(prs)} PrometheusRules for {BURST} rules)"
    )


async def test_the_evaluator_survives_an_api_server_restart(
    plane: ControlPlane,
    tmp_path: Path,
    prometheus_server: Any,  # noqa: F811
) -> None:
    """An evaluator (with its shard's Lease, as its Deployment runs it) through three restarts of
    the API server: it stays up, writes status again and follows rule edits through its watch."""
    prom = prometheus_server()
    ns = unique("eval")
    figures: list[str] = []
    ref = rule_ref(ns, "five")
    async with client(plane) as kube:
        await install_crds(kube)
        async with namespaces(kube, ns):
            spec = {
                "prometheus": {"url": prom.url},
                "evaluator": {"statusInterval": "1s"},
                "defaults": {"interval": "1s"},
            }
            await kube.create(config(ns, **spec))
            body = rule(ns, "five", 1)
            body["spec"] = {
                "query": {"expr": "vector(5)"},
                "condition": {"type": "threshold", "operator": "gt", "threshold": 1},
                "evaluation": {"engine": "evaluator", "interval": "1s"},
            }
            await kube.create(body)
            evaluator = evaluator_process(plane.kubeconfig, f"{ns}/default", (0, 1), tmp_path)
            try:

                async def state(want: str, after: float = 0.0) -> Body | None:
                    status = ((await kube.get(ref)) or {}).get("status") or {}
                    evaluated = _epoch((status.get("lastEvaluation") or {}).get("time"))
                    return status if status.get("state") == want and evaluated > after else None

                await eventually(lambda: state("Firing"), 60, "the rule Firing")
                current = "Firing"
                for rep in range(REPEATS):
                    killed, ready = await outage(plane, 0.0)  # a restart: killed, started at once
                    back = time.time()
                    await eventually(
                        lambda c=current, b=back: state(c, b), 30, "a status written after the restart", 0.1
                    )
                    wrote = time.monotonic() - ready
                    current, threshold = ("Inactive", 10) if current == "Firing" else ("Firing", 1)
                    edited, edited_wall = time.monotonic(), time.time()
                    await kube.merge_patch(ref, {"spec": {"condition": {"threshold": threshold}}})
                    await eventually(lambda c=current, e=edited_wall: state(c, e), 30, f"the rule {current}", 0.1)
                    followed = time.monotonic() - edited
                    figures.append(
                        f"round {rep}: down {ready - killed:.1f} s, status written {wrote:.1f} s after ready, "
                        f"an edit followed in {followed:.1f} s (now {current})"
                    )
                    assert evaluator.alive(), evaluator.output()[-4000:]
                check_process(evaluator)
            except BaseException:
                print(evaluator.output()[-8000:])
                raise
            finally:
                evaluator.stop()
    print("\nevaluator, API server restarted (killed, started at once):\n  " + "\n  ".join(figures))


async def sample_until_exit(op: Proc, since: float, limit: float) -> list[tuple[float, int]]:
    """/healthz every 50 ms while ``op`` runs (at most ``limit`` s after ``since``): (when, status)."""
    seen: list[tuple[float, int]] = []
    while op.alive() and time.monotonic() - since < limit:
        seen.append((time.monotonic(), await asyncio.to_thread(healthz, op)))
        await asyncio.sleep(0.05)
    return seen


def check_failed_exit(op: Proc, seen: list[tuple[float, int]], limit: float) -> float:
    """The process ended non-zero and /healthz answered 500 from the failure on; when the first 500 was."""
    assert not op.alive(), f"still up {limit:.0f} s after the fault:\n{op.output()[-4000:]}"
    code = op.popen.returncode
    failing = [t for t, status in seen if status == 500]
    assert code != 0 and failing, (code, seen[-5:], op.output()[-4000:])
    assert all(status in (500, 0) for t, status in seen if t >= failing[0]), seen  # 0: gone
    assert "kopf's machinery failed" in op.output(), op.output()[-4000:]
    return failing[0]


async def test_a_restart_never_leaves_the_operator_up_and_idle(plane: ControlPlane, tmp_path: Path) -> None:
    """The API server killed, started again 5 s later, 3 times, under an operator whose kopf retries
    its requests for 3 s only (300 s by default). kopf rides out refused connections for ever, but
    a restarting server's 503s may outlast its retries, and then kopf gives up. Either way the
    operator is never up and idle: within 60 s of the server's return it has either exited
    non-zero with /healthz 500 from the failure on, or it answers /healthz 200 and an edit made
    after the return has landed, within 15 s."""
    ns = unique("restart")
    env = {**NO_LEADER_ELECTION, "KLAXON_API_RETRY_SECONDS": "3"}
    limit = 60.0
    outcomes: list[str] = []
    async with client(plane) as kube:
        await install_crds(kube)
        async with namespaces(kube, ns):
            await kube.create(config(ns))
            await kube.create(rule(ns, "r0", 500))
            for rep in range(REPEATS):
                workdir = tmp_path / f"rep{rep}"
                workdir.mkdir()
                async with operator_process(plane.kubeconfig, (ns,), workdir, env=env) as op:
                    try:
                        outcomes.append(
                            f"round {rep}: " + await restart_under(plane, kube, ns, op, 900 + 10 * rep, limit)
                        )
                    except BaseException:
                        print(op.output()[-8000:])
                        raise
    print("\nAPI server restarted (killed, back 5 s later), kopf retrying 3 s:\n  " + "\n  ".join(outcomes))


STAMPED = re.compile(r"^\d{4}-\d\d-\d\d [\d:]{8},\d{3} \w+ (\S+?):? ", re.M)


def own_tracebacks(out: str) -> list[str]:
    """Loggers that logged a traceback, except kopf's: with its requests retried for 3 s only, kopf
    logs its own failed API calls (retries, throttling an object) with tracebacks while the server
    is away, which is kopf's business; Klaxon's code must log none."""
    found = []
    for at in (m.start() for m in re.finditer("Traceback", out)):
        stamped = list(STAMPED.finditer(out, 0, at))
        logger = stamped[-1].group(1) if stamped else "?"
        if not logger.startswith("kopf"):
            found.append(logger)
    return found


async def restart_under(plane: ControlPlane, kube: KubeClient, ns: str, op: Proc, threshold: int, limit: float) -> str:
    ref = rule_ref(ns, "r0")
    await kube.merge_patch(ref, {"spec": {"condition": {"threshold": threshold}}})
    await eventually(lambda: landed(kube, ns, {"r0": threshold}), 60, "the first edit")
    killed = await asyncio.to_thread(plane.kill_apiserver)
    await asyncio.sleep(5)
    plane.start_apiserver()
    ready = await asyncio.to_thread(plane.wait_ready)
    await kube.merge_patch(ref, {"spec": {"condition": {"threshold": threshold + 1}}})
    seen: list[tuple[float, int]] = []
    while op.alive() and time.monotonic() - ready < limit:
        seen.append((time.monotonic(), await asyncio.to_thread(healthz, op)))
        if seen[-1][1] == 200 and await landed(kube, ns, {"r0": threshold + 1}):
            took = time.monotonic() - ready
            assert took <= LANDS_WITHIN_S, f"the edit landed {took:.1f} s after the server was ready"
            assert op.alive()
            assert not own_tracebacks(op.output()), op.output()[-6000:]
            return (
                f"down {ready - killed:.1f} s, kopf rode it out: /healthz 200, the edit landed {took:.1f} s after ready"
            )
        await asyncio.sleep(0.1)
    assert not op.alive(), f"up and idle {limit:.0f} s after the server's return: /healthz {seen[-5:]}"
    failed = check_failed_exit(op, seen, limit)
    return (
        f"down {ready - killed:.1f} s, kopf gave up: /healthz 500 {failed - ready:.1f} s after ready, "
        f"exit code {op.popen.returncode} {time.monotonic() - failed:.1f} s later"
    )


async def test_a_fatal_failure_of_kopf_ends_the_process_and_healthz_says_so_at_once(tmp_path: Path) -> None:
    """kopf gives up a watch whose requests failed for --api-retry-seconds (3 s here), and with it
    its whole orchestrator. Here the AlertRule CRD's conversion webhook is down, so once the API
    server restarts every list of AlertRules is a 500. The operator must exit non-zero, with
    /healthz 500 from the failure on. (A plane of its own: the CRD stays broken.)"""
    ns = unique("fatal")
    with control_plane() as own, webhook_certs() as certs:
        async with client(own) as kube:
            await install_crds(kube)
            env = {**NO_LEADER_ELECTION, "KLAXON_API_RETRY_SECONDS": "3"}
            async with namespaces(kube, ns), operator_process(own.kubeconfig, (ns,), tmp_path, env=env) as op:
                try:
                    await kube.create(config(ns))
                    await break_conversion(kube, certs.ca_bundle, free_port())
                    await kube.create({**rule(ns, "r0", 500), "apiVersion": "klaxon.dev/v1alpha2"})
                    await outage(own, 0.0)
                    restarted = time.monotonic()
                    seen = await sample_until_exit(op, restarted, 120)
                    exited = time.monotonic()
                    failed = check_failed_exit(op, seen, 120)
                    assert "multitasker" in op.output()
                    print(
                        f"\nfatal kopf failure: /healthz 500 from {failed - restarted:.1f} s after the restart, "
                        f"the process gone {exited - failed:.1f} s later with exit code {op.popen.returncode}"
                    )
                except BaseException:
                    print(op.output()[-8000:])
                    raise


async def break_conversion(kube: KubeClient, ca_bundle: str, port: int) -> None:
    """Serve AlertRules as v1alpha2 too, stored as v1alpha2, converted by a webhook nobody serves."""
    ref = Ref("apiextensions.k8s.io/v1", "customresourcedefinitions", None, "alertrules.klaxon.dev")
    crd = await kube.get(ref)
    assert crd is not None
    served = crd["spec"]["versions"][0]
    stored = {**copy.deepcopy(served), "name": "v1alpha2", "storage": True}
    served["storage"] = False
    crd["spec"]["versions"].append(stored)
    crd["spec"]["conversion"] = {
        "strategy": "Webhook",
        "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": {"url": f"https://127.0.0.1:{port}/convert", "caBundle": ca_bundle},
        },
    }
    await kube.request("PUT", ref.path(), body=crd)

    async def served_v2() -> bool:
        try:
            await kube.list(Ref("klaxon.dev/v1alpha2", "alertrules", "default"))
        except KubeError:
            return False
        return True

    await eventually(served_v2, 30, "AlertRules served as v1alpha2")


def _epoch(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
