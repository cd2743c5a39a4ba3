"""Benchmark of the rule compiler: compile N mixed AlertRules, report rules/s and peak memory.

    PYTHONPATH=operator python bench/compile.py [--rules 10000] [--repeat 3]

Specs are parsed first (pydantic, reported separately); the timed part is
``compile_rule`` alone, i.e. what the operator runs per reconcile. One process, one core.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import tracemalloc
from typing import Any

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.compile import compile_rule

KINDS = ("threshold", "band", "absence", "absence-split", "dynamic", "levels", "window", "composite",
         "raw-expr", "evaluator")


def make_spec(i: int) -> dict[str, Any]:
    kind = KINDS[i % len(KINDS)]
    q: dict[str, Any] = {"metric": f"metric_{i % 97}", "selector": {"job": f"job-{i % 13}", "env": "prod"},
                         "window": "5m", "splitBy": ["instance"]}
    if i % 3 == 0:
        q["scope"] = {"device_id": [f"dev-{i}-{k}.x|y" for k in range(5)]}
    spec: dict[str, Any] = {"query": q, "labels": {"team": f"team-{i % 7}"},
                            "annotations": {"runbook_url": f"https://runbooks.example.com/{i}"}}
    if kind == "threshold":
        spec["condition"] = {"operator": "gt", "threshold": i * 0.5}
        spec["trigger"] = {"for": "5m"}
    elif kind == "band":
        spec["condition"] = {"type": "threshold", "upper": 100.0, "lower": 1.5}
    elif kind == "absence":
        spec["query"] = {**q, "splitBy": []}
        spec["condition"] = {"type": "absence"}
    elif kind == "absence-split":
        spec["condition"] = {"type": "absence"}
    elif kind == "dynamic":
        spec["condition"] = {"type": "dynamic", "upper": 200, "dynamic": {"mode": ("stddev", "percentage",
                                                                                  "envelope")[i % 3],
                                                                         "lookbackWeeks": 4}}
    elif kind == "levels":
        spec["condition"] = {"operator": "gt"}
        spec["levels"] = {"warning": {"threshold": 10}, "critical": {"threshold": 20, "for": "5m"}}
    elif kind == "window":
        spec["condition"] = {"operator": "lt", "threshold": 0.85}
        spec["trigger"] = {"requiredViolations": 3, "violationWindow": "5m"}
        spec["recovery"] = {"normalCount": 3}
    elif kind == "composite":
        del spec["query"]
        spec["condition"] = {"type": "composite", "logic": ("all", "any")[i % 2], "conditions": [
            {"name": "lat", "query": {**q, "metric": "lat"}, "threshold": 0.5},
            {"name": "err", "query": {**q, "metric": "err"}, "threshold": 0.05},
        ]}
    elif kind == "raw-expr":
        expr = f'sum by (instance) (rate(http_requests_total{{code=~"5..",job="j{i}"}}[5m]))'
        spec["query"] = {"expr": expr}
        spec["condition"] = {"operator": "gt", "threshold": 1}
    else:
        spec["condition"] = {"operator": "gt", "threshold": 3}
        spec["schedule"] = {"timezone": "Europe/Berlin", "windows": [{"start": "08:00", "end": "18:00"}]}
    return spec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    config = AlertConfigSpec.model_validate({"prometheusRule": {"labels": {"release": "kps"}}})
    t0 = time.perf_counter()
    specs = [AlertRuleSpec.model_validate(make_spec(i)) for i in range(args.rules)]
    parse_s = time.perf_counter() - t0

    best = float("inf")
    engines: dict[str, int] = {}
    problems = rules_out = 0
    for _ in range(args.repeat):
        engines.clear()
        problems = rules_out = 0
        t0 = time.perf_counter()
        for i, spec in enumerate(specs):
            r = compile_rule(f"rule-{i}", f"ns-{i % 50}", spec, config)
            engines[r.engine] = engines.get(r.engine, 0) + 1
            problems += bool(r.problems)
            rules_out += sum(len(g["rules"]) for g in r.groups)
        best = min(best, time.perf_counter() - t0)

    tracemalloc.start()
    results = [compile_rule(f"rule-{i}", f"ns-{i % 50}", s, config) for i, s in enumerate(specs)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del results
    maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"python {platform.python_version()} on {platform.machine()} ({platform.processor() or 'cpu'})")
    mix = ", ".join(f"{k} {v}" for k, v in sorted(engines.items()))
    print(f"rules compiled:          {args.rules} ({mix}; "
          f"{problems} with problems; {rules_out} Prometheus rules out)")
    print(f"parse (pydantic, once):  {parse_s:.2f} s")
    print(f"compile (best of {args.repeat}):       {best:.2f} s = {args.rules / best:,.0f} rules/s")
    print(f"peak traced memory holding all {args.rules} results: {peak / 2**20:.1f} MiB")
    print(f"process max RSS:         {maxrss_mib:.0f} MiB")
    return 0 if problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
