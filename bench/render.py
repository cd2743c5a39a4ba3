"""Benchmark of ``klaxon render``: N mixed AlertRules in one directory, rendered as a user runs it.

    PYTHONPATH=operator python bench/render.py [--rules 6500] [--repeat 3]

The rules are bench/compile.py's mix (thresholds, bands, absence, dynamic baselines, levels,
N-of-M windows, composites, raw PromQL, evaluator-only schedules), written as one manifest file
per 100 rules plus an AlertConfig. Timed: the whole command as a subprocess (``python -m
klaxon.cli render DIR``, stdout to a file: start-up, reading, validation, compiling, YAML out),
then the same in-process split into its phases.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compile import make_spec  # bench/compile.py: the same mix of rules

PER_FILE = 100


def write_rules(root: Path, n: int) -> None:
    config = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertConfig",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"prometheusRule": {"labels": {"release": "kps"}}},
    }
    (root / "00-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for start in range(0, n, PER_FILE):
        docs = [
            {
                "apiVersion": "klaxon.dev/v1alpha1",
                "kind": "AlertRule",
                "metadata": {"name": f"rule-{i}", "namespace": "default"},
                "spec": make_spec(i),
            }
            for i in range(start, min(n, start + PER_FILE))
        ]
        (root / f"rules-{start // PER_FILE:04d}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


def phases(root: Path) -> dict[str, float]:
    """The in-process phases of one render (the same functions the command calls)."""
    from klaxon.api.alertconfig import AlertConfigSpec
    from klaxon.api.alertrule import AlertRuleSpec
    from klaxon.api.manifests import dump_yaml, load_paths
    from klaxon.api.validation import parse_object
    from klaxon.compile import compile_rule

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    docs = load_paths([root])
    out["read YAML"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    parsed = [parse_object(d.body) for d in docs]
    out["validate (pydantic)"] = time.perf_counter() - t0
    config = next(p.spec for p in parsed if isinstance(p.spec, AlertConfigSpec))
    assert isinstance(config, AlertConfigSpec)
    t0 = time.perf_counter()
    results = [compile_rule(p.name, "default", p.spec, config) for p in parsed if isinstance(p.spec, AlertRuleSpec)]
    out["compile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    text = "".join(f"---\n{dump_yaml(r.prometheus_rule)}" for r in results if r.prometheus_rule is not None)
    out["write YAML"] = time.perf_counter() - t0
    out["output MiB"] = len(text) / 2**20
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=6500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}; libyaml C loader/dumper: {yaml.__with_libyaml__}")
    with tempfile.TemporaryDirectory(prefix="klaxon-bench-render-") as tmp:
        root = Path(tmp) / "rules"
        root.mkdir()
        write_rules(root, args.rules)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "operator"),
                                                              os.environ.get("PYTHONPATH", "")])}
        times, cpus = [], []
        for _ in range(args.repeat):
            with open(Path(tmp) / "out.yaml", "wb") as sink:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "klaxon.cli", "render", str(root)],
                                      stdout=sink, stderr=subprocess.PIPE, env=env, check=False)
                times.append(time.perf_counter() - t0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if proc.returncode != 0:
                print(proc.stderr.decode()[-2000:], file=sys.stderr)
                return 1
        manifests = (Path(tmp) / "out.yaml").read_text().count("kind: PrometheusRule")
        print(f"klaxon render of {args.rules} AlertRules in {len(list(root.iterdir()))} files: "
              f"{manifests} PrometheusRules")
        print(f"command wall time: best {min(times):.2f} s, worst {max(times):.2f} s (of {args.repeat}); "
              f"CPU (user+sys) best {min(cpus):.2f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        with contextlib.redirect_stderr(io.StringIO()):
            split = phases(root)
        print("in-process phases: " + ", ".join(
            f"{k} {v:.2f}" + ("" if k == "output MiB" else " s") for k, v in split.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
