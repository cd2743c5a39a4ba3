"""Benchmark: `klaxon preview` of examples/12-api-latency-dynamic.yaml (stddev, K=4) over 30 days of 1-minute data.

Times separately: loading the CSV, the preview computation (selection, grouping, replay with a
4-week warmup), the JSON document, and the plot.

Run: PYTHONPATH=operator python bench/preview_replay.py
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from klaxon.preview.data import load_file
from klaxon.preview.plot import plot
from klaxon.preview.run import FileSource, load_rule, run_preview

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400.0
WEEK = 7 * DAY
START = 1_780_272_000.0  # 2026-06-01T00:00Z
END = START + 30 * DAY
T = TypeVar("T")


def best(fn: Callable[[], T], n: int = 5) -> tuple[float, float, T]:
    times, out = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    assert out is not None
    return min(times), max(times), out


def write_csv(path: Path, seed: int = 1) -> int:
    rng = np.random.default_rng(seed)
    t = np.arange(START - 4 * WEEK, END + 1, 60.0)
    v = 200 + 50 * np.sin(2 * np.pi * t / DAY) + 20 * np.sin(2 * np.pi * t / WEEK) + rng.normal(0, 5, t.size)
    for s in rng.integers(0, t.size - 120, 60):
        v[s : s + rng.integers(3, 120)] += rng.uniform(40, 120)
    with path.open("w") as f:
        f.write("timestamp,service,host,value\n")
        f.writelines(f"{int(a)},checkout,api-1,{b:.2f}\n" for a, b in zip(t, v, strict=True))
    return int(t.size)


def main() -> None:
    ref = load_rule(ROOT / "examples" / "12-api-latency-dynamic.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "30d.csv"
        n = write_csv(csv)
        lo, hi, series = best(lambda: load_file(csv), 3)
        print(f"samples={n}")
        print(f"load CSV:               {lo:.3f}-{hi:.3f} s")
        src = FileSource(series)
        lo, hi, res = best(lambda: run_preview(ref, src.fetch, START, END))
        r = res.series[0].result
        print(
            f"evaluations reported={len(r.points)} violations={r.summary.violations} alarms={r.summary.alarms} "
            f"transitions={len(r.transitions)} low_confidence={r.summary.low_confidence_points}"
        )
        print(f"preview computation:    {lo:.3f}-{hi:.3f} s   (goal < 0.3 s)")
        lo, hi, _ = best(lambda: json.dumps(res.to_dict()), 3)
        print(f"JSON document:          {lo:.3f}-{hi:.3f} s")
        png = Path(tmp) / "p.png"
        lo, hi, _ = best(lambda: plot(res, png), 3)
        print(f"plot PNG (1200x400):    {lo:.3f}-{hi:.3f} s")


if __name__ == "__main__":
    main()
