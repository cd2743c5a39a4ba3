"""Benchmark: N notifications through the Notifier (policy + SQLite outbox + HTTP) to a local
webhook receiver. Latency = handle() call to the receiver having the request.

    PYTHONPATH=operator /work/venv/bin/python bench/notify.py [--count 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from klaxon.api.channel import NotificationChannelSpec
from klaxon.notify import DictSecretResolver, MemoryStatusSink, Notification, Notifier


async def main(count: int, concurrency: int) -> int:
    received: dict[str, float] = {}

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        received[request.headers["X-Seq"]] = time.perf_counter()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    specs = [
        NotificationChannelSpec.model_validate(
            {
                "type": "webhook",
                "webhook": {"url": url, "headers": {"X-Seq": str(i)}},
                "rateLimit": {"perMinute": 100000},
            }
        )
        for i in range(2 * count)
    ]

    async def phase(notifier: Notifier, offset: int, rate: float | None) -> tuple[float, list[float]]:
        sent: dict[str, float] = {}
        t_start = time.perf_counter()
        for j in range(count):
            i = offset + j
            if rate is not None:  # open-loop arrivals at a fixed rate
                delay = t_start + j / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent[str(i)] = time.perf_counter()
            await notifier.handle(
                Notification(
                    rule_namespace="bench",
                    rule_name="r",
                    dedup_key=f"k{i}",
                    episode_id=f"e{i}",
                    state_from="Pending",
                    state_to="Firing",
                    time=datetime.now(UTC),
                    labels={"i": str(i)},
                    channels=(f"hook{i}",),
                )
            )
        await notifier.wait_idle(120)
        elapsed = time.perf_counter() - t_start
        return elapsed, sorted((received[k] - sent[k]) * 1000 for k in sent if k in received)

    with tempfile.TemporaryDirectory() as tmp:
        notifier = Notifier(
            Path(tmp) / "outbox.sqlite", DictSecretResolver(), MemoryStatusSink(), concurrency=concurrency
        )
        await notifier.start()
        await notifier.set_channel("bench", "hook0", specs[0])
        for i, spec in enumerate(specs):
            notifier.channels[("bench", f"hook{i}")] = spec  # a channel per message: X-Seq identifies it
        burst_s, burst_lat = await phase(notifier, 0, None)
        _paced_s, lat = await phase(notifier, count, 500.0)
        await notifier.stop()
    await runner.cleanup()

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(len(xs) * q))]

    p50, p99 = statistics.median(lat), pct(lat, 0.99)
    print(f"received: {len(received)}/{2 * count}")
    print(
        f"burst of {count}: throughput {count / burst_s:.0f}/s (drained in {burst_s:.2f} s; "
        f"queueing latency p50 {statistics.median(burst_lat):.0f} ms, p99 {pct(burst_lat, 0.99):.0f} ms)"
    )
    print(f"{count} paced at 500/s: latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms")
    ok = len(received) == 2 * count and count / burst_s >= 500 and p99 < 200
    print("goal (>= 500/s, p99 < 200 ms):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    a = ap.parse_args()
    sys.exit(asyncio.run(main(a.count, a.concurrency)))
