"""maxStatusWritesPerMinute: a token bucket per evaluator; changed statuses first, heartbeats deferred."""

from __future__ import annotations

from typing import Any

import pytest

from klaxon.evaluator import StatusWriter
from klaxon.evaluator.status import TokenBucket


def status(state: str, t: float) -> dict[str, Any]:
    return {
        "state": state,
        "lastEvaluation": {"time": str(t), "value": t, "message": ""},
        "activeSeries": [],
        "activeSeriesCount": 0,
    }


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.fail: set[str] = set()

    async def __call__(self, ns: str, name: str, st: dict[str, Any]) -> None:
        if name in self.fail:
            raise RuntimeError("409 Conflict")
        self.calls.append((ns, name, st["lastEvaluation"]["value"]))


def test_token_bucket_refills_at_the_rate_and_caps_at_one_minute() -> None:
    b = TokenBucket(6)
    assert sum(b.take(0.0) for _ in range(10)) == 6
    assert not b.take(9.9) and b.take(10.0)  # one token per 10 s
    assert sum(b.take(10_000.0) for _ in range(10)) == 6  # burst capped at a minute's worth
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_changed_statuses_go_first_and_heartbeats_wait() -> None:
    sink = Sink()
    writer = StatusWriter(sink, heartbeat_s=300, max_per_minute=6)
    names = [f"r{i:02d}" for i in range(20)]
    for n in names:
        writer.seed("ns", n, status("Inactive", 0), at=0.0)
    # t=300: every rule is due for its heartbeat and r17, r18 changed; a budget of 6
    items = [("ns", n, status("Firing" if n in ("r17", "r18") else "Inactive", 300.0)) for n in names]
    report = await writer.write_all(items, 300.0)
    written = [n for _, n in report.written]
    assert written[:2] == ["r17", "r18"] and len(written) == 6
    assert (report.deferred_changes, report.deferred_heartbeats) == (0, 14)
    # 10 s later one token: a new change beats the 14 waiting heartbeats
    items = [("ns", n, status("Firing" if n in ("r17", "r18", "r10") else "Inactive", 310.0)) for n in names]
    report = await writer.write_all(items, 310.0)
    assert [n for _, n in report.written] == ["r10"] and report.deferred_heartbeats == 13


async def test_steady_state_writes_stay_within_budget_and_heartbeat() -> None:
    """Nothing changes: N rules with heartbeat H cost at most N/H writes a minute on average."""
    sink = Sink()
    n, heartbeat, budget = 50, 120.0, 100
    writer = StatusWriter(sink, heartbeat_s=heartbeat, max_per_minute=budget)
    names = [f"r{i}" for i in range(n)]
    per_minute: dict[int, int] = {}
    for step in range(0, 60 * 20, 10):  # 20 minutes, a cycle every 10 s
        t = float(step)
        report = await writer.write_all([("ns", x, status("Inactive", t)) for x in names], t)
        per_minute[step // 60] = per_minute.get(step // 60, 0) + len(report.written)
    assert per_minute[0] == n  # the first write of each rule
    assert all(v <= budget for v in per_minute.values())
    steady = sum(per_minute[m] for m in range(2, 20)) / 18
    assert steady <= n / (heartbeat / 60) + 1e-9  # 25 a minute
    assert steady > 0  # heartbeats do happen


async def test_budget_of_one_defers_without_losing_a_change_and_failures_retry() -> None:
    sink = Sink()
    writer = StatusWriter(sink, heartbeat_s=300, max_per_minute=1)
    sink.fail.add("b")
    items = [("ns", "a", status("Firing", 0.0)), ("ns", "b", status("Firing", 0.0))]
    first = await writer.write_all(items, 0.0)
    assert first.written == [("ns", "a")] and first.deferred_changes == 1
    second = await writer.write_all(items, 60.0)
    assert second.failed == [("ns", "b")] and second.written == []
    sink.fail.clear()
    third = await writer.write_all(items, 120.0)
    assert third.written == [("ns", "b")]  # the change was never dropped


async def test_constant_changes_do_not_starve_heartbeats() -> None:
    """40 rules flap every cycle, 10 are quiet: with a budget of 60 a minute (10 per 10 s cycle),
    the quiet ones still get their heartbeats (one write in five is a heartbeat when both wait)."""
    sink = Sink()
    writer = StatusWriter(sink, heartbeat_s=60, max_per_minute=60)
    flapping = [f"f{i:02d}" for i in range(40)]
    quiet = [f"q{i}" for i in range(10)]
    for n in flapping + quiet:
        writer.seed("ns", n, status("Inactive", 0), at=0.0)
    beats: dict[str, int] = {}
    deferred = 0
    for step, t in enumerate(float(x) for x in range(60, 60 * 11, 10)):  # ten minutes, a cycle every 10 s
        items = [("ns", n, status("Firing" if (step + i) % 2 else "Inactive", t)) for i, n in enumerate(flapping)]
        items += [("ns", n, status("Inactive", t)) for n in quiet]
        report = await writer.write_all(items, t)
        deferred += report.deferred_changes
        for _, n in report.written:
            if n.startswith("q"):
                beats[n] = beats.get(n, 0) + 1
    assert deferred > 300  # the changes alone exceed the budget (after the first minute's burst)
    assert set(beats) == set(quiet)  # every quiet rule was heartbeated ...
    assert min(beats.values()) >= 3  # ... every few minutes (4 here), not once and never again


async def test_heartbeats_get_their_turn_even_below_five_writes_a_cycle() -> None:
    """One token per cycle and a change every cycle: every fifth write is still a heartbeat."""
    sink = Sink()
    writer = StatusWriter(sink, heartbeat_s=60, max_per_minute=6)  # 1 write per 10 s cycle
    writer.seed("ns", "quiet", status("Inactive", 0), at=0.0)
    writer.seed("ns", "flap", status("Inactive", 0), at=0.0)
    written: list[str] = []
    assert writer.bucket is not None
    for step, t in enumerate(float(x) for x in range(60, 60 + 10 * 60, 10)):
        writer.bucket.tokens = 0.0  # exactly one token per cycle (the refill of 10 s)
        flap = status("Firing" if step % 2 else "Inactive", t)
        items = [("ns", "flap", flap), ("ns", "quiet", status("Inactive", t))]
        report = await writer.write_all(items, t)
        written += [n for _, n in report.written]
    assert written.count("quiet") >= 10  # ~ one write in five of 60
    assert written.count("flap") >= 40


async def test_writes_of_a_cycle_run_concurrently_but_bounded() -> None:
    """A cycle's admitted writes overlap (a cycle does not take one round trip per write), never
    more than ``concurrency`` at once, and the report keeps the queue's order."""
    import asyncio

    inflight = peak = 0
    order: list[str] = []

    async def slow(ns: str, name: str, st: dict[str, Any]) -> None:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        await asyncio.sleep(0.01)
        inflight -= 1
        order.append(name)

    writer = StatusWriter(slow, heartbeat_s=300, max_per_minute=30, concurrency=8)
    names = [f"r{i:02d}" for i in range(40)]
    report = await writer.write_all([("ns", n, status("Firing", 1.0)) for n in names], 1.0)
    assert peak == 8
    assert [n for _, n in report.written] == names[:30]  # the budget still caps the cycle
    assert report.deferred_changes == 10 and sorted(order) == names[:30]


async def test_configure_changes_budget_and_heartbeat_keeping_what_was_written() -> None:
    sink = Sink()
    writer = StatusWriter(sink, heartbeat_s=300, max_per_minute=6)
    names = [f"r{i}" for i in range(10)]
    first = await writer.write_all([("ns", n, status("Inactive", 0.0)) for n in names], 0.0)
    assert len(first.written) == 6 and writer.bucket is not None and writer.bucket.tokens < 1
    writer.configure(heartbeat_s=60, max_per_minute=600)
    # not a fresh full bucket (no burst of 600 on a config edit): 1 s later 10 tokens came in
    second = await writer.write_all([("ns", n, status("Inactive", 1.0)) for n in names], 1.0)
    assert [n for _, n in second.written] == names[6:]
    # unchanged statuses: no heartbeat before 60 s, all of them at 60 s (the new statusInterval)
    assert (await writer.write_all([("ns", n, status("Inactive", 59.0)) for n in names], 59.0)).written == []
    third = await writer.write_all([("ns", n, status("Inactive", 61.0)) for n in names], 61.0)
    assert len(third.written) == 10
    writer.configure(heartbeat_s=60, max_per_minute=None)
    assert writer.bucket is None
