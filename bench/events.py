"""Benchmark: live events through POST /v1/events — validation, idempotency, queue, matching against
100 event rules (grouping, dedup, cooldown, silences, entries, per-key counters) — on loopback.

    PYTHONPATH=operator /work/venv/bin/python bench/events.py [--events 200000] [--batch 100]
        [--rules 100] [--concurrency 4] [--wildcard] [--tracemalloc]

Throughput = accepted events / (first POST → queue drained). Latency = one POST's round trip
(client side). The senders run in a second process (bodies pre-serialised, 4 connections), as
cameras and detectors do in production; on a 2-core machine each process has one core.
Notifications go to a counting stub (the Notifier has its own benchmark, bench/notify.py).
``--wildcard``: no rule has cameras/zones/types, so every event is matched against every rule
(the index cannot help) — the worst case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.events.http import EVENTS_PATH, mount_event_routes
from klaxon.events.service import EventService, tune_gc
from klaxon.notify.model import Notification

TOKEN = "bench-token-0123456789abcdef"
CAMERAS = [f"cam-{i:03d}" for i in range(100)]
ZONES = [f"zone-{i:02d}" for i in range(20)]
TYPES = ["person", "vehicle", "animal", "package", "bicycle"]


class Stub:
    def __init__(self) -> None:
        self.count = 0

    async def handle(self, n: Notification) -> None:
        self.count += 1


def rules(n: int, wildcard: bool, rng: random.Random) -> list[AlertRuleSpec]:
    out = []
    for i in range(n):
        flt: dict[str, Any] = {"riskThreshold": rng.choice([30, 50, 70]), "minConfidence": 0.6}
        kind = "wild" if wildcard else ("camera" if i < 80 else "zone" if i < 90 else "type" if i < 98 else "wild")
        if kind == "camera":
            flt["cameras"] = rng.sample(CAMERAS, 2)
            flt["objectTypes"] = ["person", "vehicle"]
        elif kind == "zone":
            flt["zones"] = rng.sample(ZONES, 2)
        elif kind == "type":
            flt["objectTypes"] = [rng.choice(TYPES)]
        spec: dict[str, Any] = {
            "events": flt,
            "notify": {"dedupKey": "{camera_id}:{object_type}", "cooldown": "10m"},
        }
        if i % 4 == 0:
            spec["schedule"] = {
                "timezone": "Europe/Berlin",
                "windows": [
                    {"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "start": "22:00", "end": "06:00"}
                ],
            }
        out.append(AlertRuleSpec.model_validate(spec))
    return out


def bodies(count: int, batch: int, rng: random.Random) -> list[bytes]:
    t0 = datetime(2025, 1, 15, 20, 0, tzinfo=UTC)
    out = []
    for b in range(0, count, batch):
        events = []
        for i in range(b, min(count, b + batch)):
            events.append(
                {
                    "id": f"ev-{i}",
                    "timestamp": (t0 + timedelta(milliseconds=50 * i)).isoformat(),
                    "camera_id": rng.choice(CAMERAS),
                    "zone_ids": [rng.choice(ZONES)],
                    "object_types": [rng.choice(TYPES)],
                    "risk_score": round(rng.uniform(0, 100), 1),
                    "confidence": round(rng.uniform(0.3, 1.0), 2),
                    "labels": {"site": "hq"},
                }
            )
        out.append(json.dumps(events).encode())
    return out


def client_process(url: str, args: argparse.Namespace, go: Any, out: Any) -> None:
    """The senders, in their own process (as in production: cameras are not in the evaluator)."""
    rng = random.Random(7)
    rules(args.rules, args.wildcard, rng)  # the same random stream as the rules in the evaluator
    payloads = bodies(args.events, args.batch, rng)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []

    async def run() -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for p in payloads:
            queue.put_nowait(p)

        async def client(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                body = queue.get_nowait()
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 202, resp.status
                latencies.append(time.perf_counter() - t)

        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            go.wait()
            await asyncio.gather(*(client(session) for _ in range(args.concurrency)))

    asyncio.run(run())
    out.send(latencies)


def make_service(args: argparse.Namespace, stub: Stub, state_path: Path | None) -> EventService:
    """The AlertConfig's service with the benchmark's rules (the same random stream as the senders')."""
    rng = random.Random(7)
    config = AlertConfigSpec.model_validate(
        {
            "events": {"token": {"name": "t", "key": "token"}, "maxBatch": max(args.batch, 1000), "queueSize": 1000000},
            "grouping": {"window": "2m", "minEvents": 2, "groupBy": ["camera_id"]},
            "silences": [
                {"matchers": [{"label": "zone_id", "op": "=", "value": "zone-07"}], "until": "2030-01-01T00:00:00Z"}
            ],
        }
    )

    async def token() -> str:
        return TOKEN

    service = EventService(
        config, token, notifier=stub, registry=CollectorRegistry(), status_interval_s=0, state_path=state_path
    )
    for i, spec in enumerate(rules(args.rules, args.wildcard, rng)):
        service.set_rule("bench", f"rule-{i:03d}", spec)
    return service


async def main(args: argparse.Namespace) -> int:
    stub = Stub()
    state_path = Path(args.state_dir) / "events-state.json" if args.state_dir else None
    service = make_service(args, stub, state_path)
    tune_gc()  # as `klaxon evaluator` does when event ingestion is on
    app = web.Application()
    mount_event_routes(app, service)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}{EVENTS_PATH}"
    if args.tracemalloc:
        tracemalloc.start()
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    sender = ctx.Process(target=client_process, args=(url, args, go, send), daemon=True)
    sender.start()
    await asyncio.sleep(3)  # the sender builds its payloads before the clock starts
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    go.set()
    latencies: list[float] = await loop.run_in_executor(None, receive.recv)
    ingested = time.perf_counter() - started
    await service.drain(timeout_s=600)
    total = time.perf_counter() - started
    await loop.run_in_executor(None, sender.join)
    peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    await runner.cleanup()
    if state_path is not None:
        t = time.perf_counter()
        service.save_state()
        took, size = (time.perf_counter() - t) * 1000, state_path.stat().st_size / 1024
        print(f"event state save (in one go, at the end): {took:.1f} ms, {size:.0f} KiB")
    report(args, service, stub, latencies, ingested, total, peak)
    return 0


def report(
    args: argparse.Namespace,
    service: EventService,
    stub: Stub,
    latencies: list[float],
    ingested: float,
    total: float,
    peak: int | None,
) -> None:
    matched = sum(sum(len(g.times) > 0 for g in r.pipeline._grouper.groups.values()) for r in service.rules.values())
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(
        f"rules={args.rules} ({'all wildcard' if args.wildcard else '80 camera, 10 zone, 8 type, 2 wildcard'}) "
        f"events={service.processed} batch={args.batch} concurrency={args.concurrency}"
    )
    print(f"ingest (all POSTs answered): {ingested:.2f} s = {service.processed / ingested:,.0f} events/s")
    print(f"ingested and matched (queue drained): {total:.2f} s = {service.processed / total:,.0f} events/s")
    print(
        f"POST latency ms: p50={p(0.5):.2f} p99={p(0.99):.2f} max={lat[-1] * 1000:.2f} "
        f"(mean {statistics.mean(lat) * 1000:.2f})"
    )
    print(f"notifications={stub.count} open groups={matched}")
    if peak is not None:
        print(f"peak traced memory: {peak / 2**20:.1f} MiB")
    print(f"evaluator process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--wildcard", action="store_true")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument(
        "--state-dir", default="", help="save grouping/cooldown/entries there every 5 s, as the evaluator does"
    )
    sys.exit(asyncio.run(main(ap.parse_args())))
