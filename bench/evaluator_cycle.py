"""Benchmark: one evaluator cycle of 2,000 mixed rules sharing selectors, against a local Prometheus.

Run: PYTHONPATH=operator:tests python bench/evaluator_cycle.py

Rules are `engine: evaluator` (an `auto` rule that compiles fully is Prometheus' to evaluate; the
evaluator then only reads `/api/v1/rules`). Also timed: `set_rules` (which compiles each rule once
to pick its engine) and the status writes of each cycle through `StatusWriter.write_all` with the
default budget of 120 writes a minute (a no-op write function: the API call is not measured).
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests")]

from klaxon.api import AlertRuleSpec, parse_object  # noqa: E402
from klaxon.evaluator import Evaluator, RuleRef, StatusWriter  # noqa: E402
from klaxon.prom.client import PrometheusClient  # noqa: E402
from support.prometheus import PrometheusServer  # noqa: E402

MIN = 60.0
WEEK = 7 * 86400.0
NOW = float((int(time.time()) // 3600 - 72) * 3600)  # three days ago: backfillable
METRICS = [f"m{i}" for i in range(10)]
SITES = [f"s{i}" for i in range(4)]
DEVICES = [f"d{i}" for i in range(10)]
RULES = 2000
CYCLES = 5


def series() -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """10 metrics x 4 sites x 10 devices; 1-minute samples around now and around now - 1w, - 2w."""
    rnd = random.Random(1)
    out = []
    spans = [(NOW - 40 * MIN, NOW + 20 * MIN)] + [
        (NOW - k * WEEK - 20 * MIN, NOW - k * WEEK + 20 * MIN) for k in (1, 2)
    ]
    for m in METRICS:
        for s in SITES:
            for d in DEVICES:
                pts = []
                for a, b in spans:
                    t = a
                    while t < b:
                        pts.append((t, round(rnd.uniform(0, 100), 2)))
                        t += MIN
                out.append(({"__name__": m, "site": s, "device": d}, pts))
    return out


def spec(body: dict[str, Any]) -> AlertRuleSpec:
    p = parse_object(
        {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertRule", "metadata": {"name": "r"}, "spec": body}
    )
    assert p.ok and isinstance(p.spec, AlertRuleSpec), p.problems
    return p.spec


def rules() -> list[RuleRef]:
    """80 % static thresholds, 20 % dynamic stddev (K=2); 120 distinct query shapes in total."""
    rnd = random.Random(2)
    out = []
    for i in range(RULES):
        m, s = rnd.choice(METRICS), rnd.choice(SITES)
        window = rnd.choice(["5m", "10m", "15m"])
        query = {"metric": m, "selector": {"site": s}, "splitBy": ["device"], "window": window}
        if i % 5 == 4:
            body: dict[str, Any] = {
                "query": query,
                "condition": {"type": "dynamic", "dynamic": {"mode": "stddev", "lookbackWeeks": 2}},
            }
        else:
            body = {"query": query, "condition": {"operator": "gt", "threshold": rnd.uniform(50, 99)}}
        body["evaluation"] = {"engine": "evaluator"}
        out.append(RuleRef("bench", f"r{i}", f"uid-{i}", spec(body)))
    return out


async def run(url: str) -> None:
    refs = rules()
    async with PrometheusClient(url) as client:
        ev = Evaluator(client)
        t0 = time.perf_counter()
        ev.set_rules(refs)
        print(f"set_rules: {len(refs)} rules classified in {time.perf_counter() - t0:.3f}s")

        async def write(ns: str, name: str, status: dict[str, Any]) -> None:
            return None

        writer = StatusWriter(write, heartbeat_s=300, max_per_minute=120)
        for c in range(CYCLES):
            t = NOW + c * MIN
            w0, c0, r0 = time.perf_counter(), time.process_time(), client.requests
            res = await ev.cycle(t)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            states: dict[str, int] = {}
            for rr in res.rules.values():
                states[rr.status["state"]] = states.get(rr.status["state"], 0) + 1
            w1 = time.perf_counter()
            items = [(*k.split("/", 1), rr.status) for k, rr in res.rules.items()]
            report = await writer.write_all([(ns, name, st) for ns, name, st in items], t)
            wtime = time.perf_counter() - w1
            print(
                f"cycle {c}: rules={len(res.rules)} queries={res.queries} http={client.requests - r0} "
                f"errors={res.query_errors} wall={wall:.3f}s cpu={cpu:.3f}s states={states} "
                f"writes={len(report.written)} deferred={report.deferred_changes}+{report.deferred_heartbeats} "
                f"write_all={wtime:.3f}s"
            )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="klaxon-bench-") as d:
        t0 = time.perf_counter()
        server = PrometheusServer(Path(d), series())
        server.start()
        print(f"backfilled {len(METRICS) * len(SITES) * len(DEVICES)} series in {time.perf_counter() - t0:.1f}s")
        try:
            asyncio.run(run(server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
