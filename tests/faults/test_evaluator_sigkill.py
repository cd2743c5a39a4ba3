"""`klaxon evaluator` SIGKILLed at random points of a burst of 20 alerts (seeded), firing and
resolving in turn: no alert is notified under two keys or as a second episode, no resolution is
lost, and what the receiver gets twice is few and always under the same Idempotency-Key."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import statistics

import pytest

from faults.conftest import Stack, assert_episode_invariant, ledger, rule_body, until
from support.receiver import Hit

N = 20
SEEDS = int(os.environ.get("KLAXON_FAULTS_SEEDS", "20"))
#: At most this many notifications may come again after one kill: what the channel may have
#: under way at once (rateLimit.maxInFlight, default 1) — sent, maybe answered, not yet recorded.
MAX_REPEATS_PER_KILL = 1


def pending(stack: Stack) -> int:
    """Rows the evaluator still has to send, read from its outbox file (any version's)."""
    db = sqlite3.connect(f"file:{stack.tmp / 'state' / 'outbox.sqlite'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0])
    finally:
        db.close()


def accepted_keys(stack: Stack) -> list[str]:
    return [h.headers["Idempotency-Key"] for h in stack.receiver.accepted]


async def test_sigkill_in_a_firing_burst_and_in_a_resolving_burst(stack: Stack) -> None:
    await sigkill_bursts(stack, 2)


@pytest.mark.faults
async def test_sigkill_at_random_points_of_bursts_many_seeds(stack: Stack) -> None:
    await sigkill_bursts(stack, SEEDS)


async def sigkill_bursts(stack: Stack, seeds: int) -> None:
    """Burst after burst (firing, resolving, ...), one kill at a random point of each."""
    series = [f"s{i:02d}" for i in range(N)]
    for s in series:
        stack.exporter.values[s] = 10.0
    stack.setup([rule_body("burst")], retry=None)  # default retries: the receiver never fails here
    stack.receiver.default = (200, 0.02)  # a receiver a little way off
    proc = stack.evaluator()
    await proc.start()
    repeats: list[int] = []
    for seed in range(seeds):
        rnd = random.Random(seed)
        kind = "firing" if seed % 2 == 0 else "resolved"
        done = len(stack.receiver.accepted)
        # Kill at a random point of the burst: within 20 ms of the receiver acknowledging its k-th
        # notification (k random), so most kills find sends on the wire or answers not yet recorded.
        k, delay = rnd.randrange(1, N), rnd.uniform(0.0, 0.02)
        seen: list[Hit] = []

        def on_accept(hit: Hit, k: int = k, delay: float = delay, seen: list[Hit] = seen) -> None:
            seen.append(hit)
            if len(seen) == k:
                asyncio.get_running_loop().call_later(delay, proc.kill)

        stack.receiver.on_accept = on_accept
        for s in series:
            stack.exporter.values[s] = 95.0 if kind == "firing" else 10.0
        await asyncio.wait_for(proc.wait(), 60)
        stack.receiver.on_accept = None
        await proc.start()

        def burst(kind: str = kind, done: int = done) -> set[str]:
            return {h.json["dedupKey"] for h in stack.receiver.accepted[done:] if h.json.get("kind") == kind}

        await until(lambda: len(burst()) == N, 60, lambda seed=seed: f"seed {seed}: {ledger(stack.receiver)}")
        await until(lambda: pending(stack) == 0, 30, "the evaluator's outbox to drain")  # repeats included
        before, window = set(accepted_keys(stack)[:done]), accepted_keys(stack)[done:]
        repeats.append(len(window) - len(set(window)) + len(before & set(window)))
        still = {f"burst,series={s}" for s in series} if kind == "firing" else set()
        assert_episode_invariant(stack.receiver, still_firing=still)
    led = assert_episode_invariant(stack.receiver, still_firing={f"burst,series={s}" for s in series})
    assert all(len(keys) == 1 for keys in led.firing.values())  # no alert under two keys
    assert len(led.firing) == N * ((seeds + 1) // 2) and len(led.resolved) == N * (seeds // 2)
    print(
        f"\n{seeds} SIGKILLs at random points of bursts of {N}: notifications the receiver got twice per kill "
        f"max {max(repeats)}, mean {statistics.mean(repeats):.2f}, total {sum(repeats)} ({repeats}); "
        f"{len(led.firing)} firing episodes under {len(led.firing)} keys, {len(led.resolved)} resolved"
    )
    assert max(repeats) <= MAX_REPEATS_PER_KILL, repeats
