"""A real Prometheus SIGKILLed in the middle of firing episodes, under both onError policies, and
the series vanishing (NoData): no series ever gets a second firing episode while one is open,
and every notified episode is resolved or still firing."""

from __future__ import annotations

import asyncio
from typing import Any

from faults.conftest import AR, NS, Stack, assert_episode_invariant, ledger, rule_body, until

STAY = ["s0", "s1", "s2"]  # still violating when Prometheus is back
CLEAR = ["s3", "s4", "s5"]  # back to normal while it was down


def state(stack: Stack, rule: str) -> Any:
    return ((stack.kube.get_object(AR, rule, NS) or {}).get("status") or {}).get("state")


def keys(rule: str, series: list[str]) -> set[str]:
    return {f"{rule},series={s}" for s in series}


async def test_prometheus_down_under_both_policies_keeps_one_episode_per_series(stack: Stack) -> None:
    for s in STAY + CLEAR:
        stack.exporter.values[s] = 10.0
    stack.setup([rule_body("err", onError="Error"), rule_body("keep", onError="KeepLast", noData="KeepLast")])
    proc = stack.evaluator()
    await proc.start()
    rec = stack.receiver
    everything = keys("err", STAY + CLEAR) | keys("keep", STAY + CLEAR)

    for s in STAY + CLEAR:
        stack.exporter.values[s] = 95.0
    await until(lambda: set(d for d, _ in ledger(rec).firing) == everything, 20, lambda: f"{ledger(rec).firing}")

    # Prometheus killed; while it is down half the series return to normal.
    stack.prom.kill()
    for s in CLEAR:
        stack.exporter.values[s] = 10.0
    await until(lambda: state(stack, "err") == "Error", 15, lambda: f"err: {state(stack, 'err')}")
    await asyncio.sleep(3.0)  # several evaluations in the outage
    assert state(stack, "keep") == "Firing"
    assert_episode_invariant(rec, still_firing=everything)
    stack.prom.start()

    # Back: the cleared series resolve (one resolution each); the others go on, not notified anew.
    cleared = keys("err", CLEAR) | keys("keep", CLEAR)
    await until(lambda: {d for d, _ in ledger(rec).resolved} == cleared, 30, lambda: f"{ledger(rec).resolved}")
    await until(lambda: state(stack, "err") == "Firing", 15, lambda: f"err: {state(stack, 'err')}")
    await asyncio.sleep(2.0)  # time for a wrong "new episode" notification to show up
    led = assert_episode_invariant(rec, still_firing=keys("err", STAY) | keys("keep", STAY))
    assert all(len(eps) == 1 for eps in led.episodes.values()), led.episodes
    assert len(led.firing) == len(everything)

    # The series vanish altogether (NoData for `err`, KeepLast for `keep`) and come back.
    await stack.exporter.stop()
    await until(lambda: state(stack, "err") == "NoData", 15, lambda: f"err: {state(stack, 'err')}")
    await asyncio.sleep(2.0)
    await stack.exporter.start()
    await until(lambda: state(stack, "err") == "Firing", 15, lambda: f"err: {state(stack, 'err')}")
    await asyncio.sleep(2.0)
    led = assert_episode_invariant(rec, still_firing=keys("err", STAY) | keys("keep", STAY))
    assert len(led.firing) == len(everything)  # still no second episode

    # Over: everything notified is resolved.
    for s in STAY:
        stack.exporter.values[s] = 10.0
    await until(lambda: len(ledger(rec).resolved) == len(everything), 20, lambda: f"{ledger(rec).resolved}")
    led = assert_episode_invariant(rec)
    print(
        f"\nPrometheus SIGKILLed ~5s and series gone ~3s: {len(led.firing)} firing episodes notified for "
        f"{len(everything)} series (both policies), {len(led.resolved)} resolved, {led.repeats} repeats by key"
    )
