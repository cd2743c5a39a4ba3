"""Benchmark: evaluator cycles of 2,000 rules with every status write due, the writes going to a
real API server (issue 17.4): the cycle must stay under the rules' 1-minute interval.

Run (a cluster from ../shared/tools/kube, or any cluster where the kubeconfig may create CRDs and
a namespace):

    KLAXON_BENCH_KUBECONFIG=PATH PYTHONPATH=operator:tests python bench/evaluator_status_writes.py

Without KLAXON_BENCH_KUBECONFIG it says so and does nothing (``make bench`` stays runnable without
a cluster). It creates a namespace with 2,000 AlertRules (the rules of bench/evaluator_cycle.py, a
backfilled local Prometheus), then runs the Evaluator plus ``StatusWriter.write_all`` through
``KubeClient.patch_status``: cycle 0 writes every status (all new), cycles 1-3 come one heartbeat
later each (every heartbeat due), with a budget of 10,000 writes a minute so that nothing is
deferred. Each mode is run with the writes concurrent (the default, 16 in flight) and, for
comparison, one at a time. Reported per cycle: wall time of the evaluation and of the writes,
process CPU time, writes. The namespace is deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests"), str(ROOT / "bench")]

from evaluator_cycle import NOW, rules, series  # noqa: E402

from e2e.scenario import install_crds  # noqa: E402
from klaxon.evaluator import Evaluator, RuleRef, StatusWriter  # noqa: E402
from klaxon.kube.client import KubeClient, Ref  # noqa: E402
from klaxon.prom.client import PrometheusClient  # noqa: E402
from support.prometheus import PrometheusServer  # noqa: E402

HEARTBEAT_S = 300.0
INTERVAL_S = 60.0
CYCLES = 4


async def create_rules(kube: KubeClient, ns: str, refs: list[RuleRef]) -> list[RuleRef]:
    """The rules as AlertRule objects (32 creates in flight); their real uids."""
    sem = asyncio.Semaphore(32)

    async def one(ref: RuleRef) -> RuleRef:
        body = {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertRule",
            "metadata": {"name": ref.name, "namespace": ns},
            "spec": ref.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        }
        async with sem:
            made = await kube.create(body)
        return RuleRef(ns, ref.name, made["metadata"]["uid"], ref.spec)

    return list(await asyncio.gather(*(one(r) for r in refs)))


async def cycles(kube: KubeClient, prom_url: str, refs: list[RuleRef], concurrency: int) -> list[dict[str, float]]:
    async def write(ns: str, name: str, status: dict[str, Any]) -> None:
        await kube.patch_status(Ref.klaxon("AlertRule", ns, name), status)

    out = []
    async with PrometheusClient(prom_url) as client:
        ev = Evaluator(client)
        ev.set_rules(refs)
        writer = StatusWriter(write, heartbeat_s=HEARTBEAT_S, max_per_minute=10000, concurrency=concurrency)
        for c in range(CYCLES):
            t = NOW + c * HEARTBEAT_S  # one heartbeat later each time: every status is due
            w0, c0 = time.perf_counter(), time.process_time()
            res = await ev.cycle(t, force=True)
            w1 = time.perf_counter()
            report = await writer.write_all([(*k.split("/", 1), rr.status) for k, rr in res.rules.items()], t)
            w2, c1 = time.perf_counter(), time.process_time()
            row = {
                "rules": len(res.rules),
                "eval_s": w1 - w0,
                "writes_s": w2 - w1,
                "cycle_s": w2 - w0,
                "cpu_s": c1 - c0,
                "writes": len(report.written),
                "failed": len(report.failed),
                "deferred": report.deferred_changes + report.deferred_heartbeats,
            }
            out.append(row)
            print(
                f"  concurrency={concurrency} cycle {c}: rules={row['rules']} eval={row['eval_s']:.2f}s "
                f"writes={row['writes']} (failed {row['failed']}, deferred {row['deferred']}) in "
                f"{row['writes_s']:.2f}s, cycle={row['cycle_s']:.2f}s cpu={row['cpu_s']:.2f}s",
                flush=True,
            )
    return out


async def run(kubeconfig: str, prom_url: str) -> None:
    kube = await KubeClient.connect(kubeconfig=kubeconfig, field_manager="klaxon-bench")
    ns = f"klaxon-bench-{secrets.token_hex(3)}"
    try:
        await install_crds(kube)
        await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        t0 = time.perf_counter()
        refs = await create_rules(kube, ns, rules())
        print(f"created {len(refs)} AlertRules in {time.perf_counter() - t0:.1f}s", flush=True)
        for concurrency in (16, 1):
            rows = await cycles(kube, prom_url, refs, concurrency)
            due = [r for r in rows[1:]]  # heartbeats due (cycle 0: every status new)
            cyc = [r["cycle_s"] for r in due]
            cpu = [r["cpu_s"] for r in due]
            print(
                f"concurrency={concurrency}: cycle with {int(due[0]['writes'])} heartbeats due "
                f"min/median/max {min(cyc):.2f}/{statistics.median(cyc):.2f}/{max(cyc):.2f}s "
                f"(interval {INTERVAL_S:.0f}s), CPU per cycle {min(cpu):.2f}/{statistics.median(cpu):.2f}/"
                f"{max(cpu):.2f}s",
                flush=True,
            )
    finally:
        await kube.delete(Ref("v1", "namespaces", None, ns))
        await kube.close()


def main() -> None:
    kubeconfig = os.environ.get("KLAXON_BENCH_KUBECONFIG")
    if not kubeconfig:
        print("evaluator_status_writes: needs a cluster; set KLAXON_BENCH_KUBECONFIG=PATH (not run)")
        return
    with tempfile.TemporaryDirectory(prefix="klaxon-bench-") as d:
        server = PrometheusServer(Path(d), series())
        server.start()
        try:
            asyncio.run(run(kubeconfig, server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
