"""Start-up of the ``klaxon`` command: ``--version`` and ``validate`` of one example, as a user runs them.

    python bench/startup.py [--runs 9]

Each command runs ``--runs`` times as a subprocess (the installed ``klaxon`` script, or
``python -m klaxon.cli`` when it is not on the PATH); printed: the median and the range of the
wall time and of the CPU time (user + sys) the process used, and the load average (on a shared
machine the wall time follows the load; the CPU time much less).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, cwd=ROOT, check=False)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr.decode()[-2000:]}")
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    script = shutil.which("klaxon")
    prog = [script] if script else [sys.executable, "-m", "klaxon.cli"]
    for rest in (["--version"], ["validate", "examples/12-api-latency-dynamic.yaml"]):
        walls, cpus = measure([*prog, *rest], args.runs)
        print(
            f"klaxon {' '.join(rest)}: wall median {statistics.median(walls):.3f} s "
            f"(min {min(walls):.3f}, max {max(walls):.3f}); CPU median {statistics.median(cpus):.3f} s "
            f"(min {min(cpus):.3f}); {args.runs} runs"
        )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
