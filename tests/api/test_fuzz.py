"""A seeded fuzz of the examples: no layer crashes, and the layers never disagree.

Each mutation changes one thing in a valid object (a value, a key, a missing field) and the
result is judged by the CLI (through YAML text, as a user's file), the webhook function and
the CRD alone (schema + CEL, tests/support/apiserver.py). The seed is fixed: a failure
reproduces, and its mutation is printed.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import yaml

from klaxon.api.manifests import KubeLoader, load_documents
from klaxon.cli.validate import check_document

from .corpus import VALID, Layer, crd_layer, documents, webhook_layer

ROOT = Path(__file__).resolve().parents[2]
SEED = 13
MUTATIONS = 600
# What only the webhook can refuse; the CRD alone storing such an object is expected.
WEBHOOK_ONLY = (
    "invalid PromQL",
    "invalid Prometheus template",
    "invalid RE2",
    "template does not compile",
    "time zone",
)

VALUES: list[Any] = [
    None, 0, -1, 1.5, 2.0, 10**6, 10**20, "", "0s", "-5m", "5m", "1h30m", "87601h", "x", "22:00", "24:00", True,
    [], {}, ["a"], {"a": 1}, {"__x": "y"}, float("nan"), float("inf"), -float("inf"), 1e308,
    "rate(x[5m]", "sum(rate(x[5m]))", "{{ $labels.x", "{{ $value | humanize }}", "{a", "{a}:{b}",
    "http://u:p@host", "https://host/x", "My_Rule", "a\r\nb", "(?=x)", "a|b", "2030-01-01", "2030-01-01T00:00:00Z",
    "Mon", "avg", "p99", "gt", "eq", "composite", "dynamic", "absence", "prometheus", "evaluator", "KeepLast",
    "Authorization", "team-a", "Team_A", "default", [[[[[[[[[[1]]]]]]]]]],
]  # fmt: skip
KEYS = ["split_by", "conditon", "threshold", "foo", "Labels", "expr", "metric", "for", "window", "name"]


def _sources() -> list[dict[str, Any]]:
    docs = []
    for path in [*sorted((ROOT / "examples").glob("*.yaml")), *VALID]:
        docs += [d for d in documents(path) if isinstance(d, dict) and d.get("apiVersion") == "klaxon.dev/v1alpha1"]
    return docs


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def mutate(doc: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    doc = copy.deepcopy(doc)
    targets = [p for p in _paths(doc) if p and p[0] in ("spec", "metadata")]
    path = rng.choice(targets)
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    op = rng.choice(["value", "value", "value", "delete", "rename", "add", "duplicate"])
    if op == "delete" and isinstance(parent, dict):
        del parent[last]
    elif op == "rename" and isinstance(parent, dict):
        parent[rng.choice(KEYS)] = parent.pop(last)
    elif op == "add" and isinstance(parent[last], dict):
        parent[last][rng.choice(KEYS)] = rng.choice(VALUES)
    elif op == "duplicate" and isinstance(parent[last], list) and parent[last]:
        parent[last].append(copy.deepcopy(parent[last][0]))
    else:
        op = "value"
        parent[last] = copy.deepcopy(rng.choice(VALUES))
    return doc, f"{op} {'.'.join(map(str, path))}"


class _Dumper(yaml.SafeDumper):
    """Quotes what kubectl's YAML would read as another type (y, n, 0755, ...), as a careful author would."""


_Dumper.yaml_implicit_resolvers = KubeLoader.yaml_implicit_resolvers


def cli_layer_of(doc: dict[str, Any]) -> Layer:
    """The CLI on the object written to YAML, as a user's file holds it."""
    text = yaml.dump(doc, Dumper=_Dumper, allow_unicode=True)
    problems = [p for d in load_documents(text, "fuzz.yaml") for p in check_document(d).problems]
    return Layer(not problems, tuple((p.path, str(p)) for p in problems))


def test_fuzz_finds_no_crash_and_no_disagreement() -> None:
    rng = random.Random(SEED)
    sources = _sources()
    refused = {"cli": 0, "crd": 0, "webhook-only": 0}
    failures: list[str] = []
    for n in range(MUTATIONS):
        doc, what = mutate(rng.choice(sources), rng)
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        where = f"#{n} {doc.get('kind')}/{meta.get('name')}: {what}"
        cli, hook = cli_layer_of(doc), webhook_layer(doc)
        stage, crd = crd_layer(doc)
        refused["cli"] += not cli.accepted
        refused["crd"] += not crd.accepted
        if cli.accepted != hook.accepted or cli.paths != hook.paths:
            failures.append(f"{where}: CLI {sorted(cli.paths)} vs webhook {sorted(hook.paths)}")
        elif not crd.accepted and (cli.accepted or not crd.paths & cli.paths):
            # Both refuse, naming at least one field alike (a field error stops the CLI before its
            # cross-field checks, while the API server still runs the CEL rules around it).
            failures.append(f"{where}: CRD ({stage}) {crd.problems} vs CLI {cli.problems}")
        elif crd.accepted and not cli.accepted:
            refused["webhook-only"] += 1
            others = [m for _, m in cli.problems if not any(w in m for w in WEBHOOK_ONLY)]
            if others:
                failures.append(f"{where}: only the CLI and the webhook refuse: {others}")
    print(f"{MUTATIONS} mutations (seed {SEED}): refused by the CLI and the webhook {refused['cli']}, "
          f"by the CRD alone {refused['crd']}, by the webhook only {refused['webhook-only']}")  # fmt: skip
    assert failures == [], "\n".join(failures[:40])
    assert refused["cli"] >= MUTATIONS // 3 and MUTATIONS - refused["cli"] >= MUTATIONS // 10
