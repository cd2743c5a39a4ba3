"""``klaxon validate``: the GitOps pre-flight check, same models as the operator."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..api.alertrule import AlertRuleSpec
from ..api.manifests import load_paths
from ..api.validation import parse_object
from ..compile import engine_problems


def run(paths: Sequence[str], quiet: bool = False) -> int:
    try:
        docs = load_paths(paths)
    except FileNotFoundError as exc:
        print(f"klaxon validate: no such file or directory: {exc}", file=sys.stderr)
        return 2
    bad = checked = 0
    for doc in docs:
        if doc.error is not None:
            print(f"{doc.where}: {doc.error}")
            bad += 1
            continue
        if not isinstance(doc.body, dict):
            print(f"{doc.where}: document must be a mapping, got {type(doc.body).__name__}")
            bad += 1
            continue
        if not doc.is_klaxon:
            continue
        checked += 1
        parsed = parse_object(doc.body)
        if isinstance(parsed.spec, AlertRuleSpec):
            parsed.problems.extend(engine_problems(parsed.spec))
        ident = f"{parsed.kind or '?'}/{parsed.name or '?'}"
        for problem in parsed.problems:
            print(f"{doc.where}: {ident}: {problem}")
        if parsed.problems:
            bad += 1
        elif not quiet:
            print(f"{doc.where}: {ident}: valid")
    if not quiet:
        print(f"{checked} Klaxon object(s) checked, {bad} invalid")
    return 1 if bad else 0
