"""Benchmark: `klaxon.engine.replay` of a dynamic stddev rule (K=4) over 30 days of 1-minute data.

Run: PYTHONPATH=operator python bench/engine_replay.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from klaxon.engine import DynamicSpec, EngineRule, LevelSpec, RecoverySpec, replay

DAY = 86400.0
WEEK = 7 * DAY
START = 1_780_272_000.0  # 2026-06-01T00:00Z, a Monday
END = START + 30 * DAY


def data(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """4 weeks of history + 30 days, one sample a minute: daily/weekly shape, noise, incidents."""
    rng = np.random.default_rng(seed)
    t = np.arange(START - 4 * WEEK, END + 1, 60.0)
    v = 200 + 50 * np.sin(2 * np.pi * t / DAY) + 20 * np.sin(2 * np.pi * t / WEEK) + rng.normal(0, 5, t.size)
    for s in rng.integers(0, t.size - 120, 60):
        v[s : s + rng.integers(3, 120)] += rng.uniform(40, 120)
    return t, v


RULE = EngineRule(
    kind="dynamic",
    direction="both",
    levels={
        "warning": LevelSpec(threshold=3, required_violations=3, violation_window_s=300, for_s=120),
        "critical": LevelSpec(threshold=5, required_violations=3, violation_window_s=300, for_s=300),
    },
    dynamic=DynamicSpec(mode="stddev", lookback_weeks=4, minimum_baseline_points=10, window_s=300),
    recovery=RecoverySpec(normal_count=3, window_s=300),
    interval_s=60,
    window_s=300,
)


def best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    t, v = data()
    res = replay(RULE, t, v, START, END)
    fast = best_of(5, lambda: replay(RULE, t, v, START, END))
    slow = best_of(1, lambda: replay(RULE, t, v, START, END, fast=False))
    reference = replay(RULE, t, v, START, END, fast=False)
    assert reference.transitions == res.transitions and reference.final_state == res.final_state
    s = res.summary
    print(
        f"samples={t.size} evaluations(incl. 4-week warmup)={int((END - START + 4 * WEEK) / 60) + 1} "
        f"reported={s.points} violations={s.violations} alarms={s.alarms} "
        f"transitions={len(res.transitions)} low_confidence={s.low_confidence_points}"
    )
    print(f"replay (fast path):       {fast:.3f} s")
    print(f"replay (step every point): {slow:.3f} s")


if __name__ == "__main__":
    main()
