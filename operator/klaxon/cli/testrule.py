"""``klaxon test-rule``: run stored events through the live event pipeline, no cluster needed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec
from ..api.manifests import load_paths
from ..api.validation import parse_object


def _load(path: str, kind: str) -> tuple[str, str, Any]:
    for doc in load_paths([path]):
        if doc.error is not None:
            raise ValueError(f"{doc.where}: {doc.error}")
        if isinstance(doc.body, dict) and doc.body.get("kind") == kind:
            parsed = parse_object(doc.body)
            if parsed.problems:
                raise ValueError(
                    f"{doc.where}: {kind}/{parsed.name}: " + "; ".join(map(str, parsed.problems))
                )
            return parsed.namespace or "default", parsed.name, parsed.spec
    raise ValueError(f"{path}: no {kind} found")


def _events(path: str) -> list[dict[str, Any]]:
    events = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not a JSON object ({exc.msg})") from None
    return events


def run(args: argparse.Namespace) -> int:
    from ..events.pipeline import run_test_rule

    try:
        ns, name, rule = _load(args.rule, "AlertRule")
        assert isinstance(rule, AlertRuleSpec)
        if rule.events is None:
            print(f"klaxon test-rule: {name} is not an event rule (spec.events is not set)", file=sys.stderr)
            return 2
        config: AlertConfigSpec | None = None
        if args.config:
            _, _, cfg = _load(args.config, "AlertConfig")
            assert isinstance(cfg, AlertConfigSpec)
            config = cfg
        report = run_test_rule(ns, name, rule, _events(args.events), config)
    except (OSError, ValueError) as exc:
        print(f"klaxon test-rule: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(report.to_json(), indent=2))
        return 0
    print(
        f"{'EVENT':<14} {'TIME':<26} {'MATCHED':<8} {'CONDITIONS':<52} {'DEDUP KEY':<28} {'NOTIFY':<7} "
        "SUPPRESSED BY"
    )
    for r in report.results:
        print(
            f"{r.event_id:<14} {r.time.isoformat():<26} {str(r.matched).lower():<8} "
            f"{','.join(r.matched_conditions) or '-':<52} {r.dedup_key or '-':<28} "
            f"{str(r.would_notify).lower():<7} {r.suppressed_by or '-'}"
        )
    print(
        f"\nrule: {name}\nevents tested: {report.tested}\nevents matched: {report.matched}\n"
        f"match rate: {report.match_rate:.2%}\nwould notify: {report.would_notify}"
    )
    if report.suppressed:
        print("suppressed: " + ", ".join(f"{k}={v}" for k, v in sorted(report.suppressed.items())))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test-rule",
        help="run stored events through an event rule (match, dedup, cooldown, grouping)",
        description="Run events (JSON lines) through an event AlertRule with the evaluator's own "
        "matching, dedup, grouping and cooldown code. Exit 0 on success, 2 on usage errors.",
    )
    p.add_argument("rule", metavar="RULE.yaml", help="file holding the AlertRule")
    p.add_argument("--events", required=True, metavar="EVENTS.jsonl", help="one event per line")
    p.add_argument("--config", metavar="CONFIG.yaml", help="AlertConfig for grouping and silences (optional)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=run)
