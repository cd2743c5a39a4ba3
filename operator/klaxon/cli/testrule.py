"""``klaxon test-rule``: run stored events through the live event pipeline, no cluster needed.

Every line of the events file is validated exactly as ``POST /v1/events`` validates a request
body (``klaxon.events.model``, the evaluator's own validator): an event the evaluator would
refuse is refused here, naming ``file:line``, the field, the problem and what is allowed. A line
holds one event or a JSON array of events (a batch). An id seen before counts as a duplicate
and is not matched again, as the evaluator's idempotency does.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .inputs import readable_file

if TYPE_CHECKING:
    from ..events.model import EventIn

#: Problems listed before the rest are only counted.
MAX_PROBLEMS = 20


def _load(path: str, kind: str) -> tuple[str, str, Any]:
    from ..api.manifests import load_paths
    from ..api.validation import parse_object

    for doc in load_paths([path]):
        if doc.error is not None:
            raise UsageError(f"{doc.where}: {doc.error}")
        if isinstance(doc.body, dict) and doc.body.get("kind") == kind:
            parsed = parse_object(doc.body)
            if parsed.problems:
                raise UsageError(f"{doc.where}: {kind}/{parsed.name}: " + "; ".join(map(str, parsed.problems)))
            return parsed.namespace or "default", parsed.name, parsed.spec
    raise UsageError(f"{path}: no {kind} found")


def _problem(path: str, lineno: int, err: dict[str, Any], batch: bool) -> str:
    where = f"{path}:{lineno}:" + (f" [{err['index']}]" if batch and err.get("index") is not None else "")
    field = f" {err['field']}:" if err.get("field") else ""
    return f"{where}{field} {err['problem']} (allowed: {err['allowed']})"


def read_events(path: str) -> tuple[list[EventIn], int]:
    """The file's events in file order without repeated ids, and how many repeats were dropped."""
    from ..events.model import parse_body

    events: list[EventIn] = []
    problems: list[str] = []
    try:
        with open(path, "rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                got, errors = parse_body(line)
                batch = line.lstrip()[:1] == b"["
                problems += [_problem(path, lineno, e, batch) for e in errors]
                events += got
    except OSError as e:
        raise UsageError(f"--events {path}: cannot be read ({e.strerror or e})") from None
    if problems:
        more = f"\n... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise UsageError(
            f"{path}: {len(problems)} problem(s); POST /v1/events would refuse these events "
            "(schema: docs/events.md)\n" + "\n".join(problems[:MAX_PROBLEMS]) + more
        )
    seen: set[str] = set()
    fresh = []
    for ev in events:
        if ev.id not in seen:
            seen.add(ev.id)
            fresh.append(ev)
    return fresh, len(events) - len(fresh)


def run(args: argparse.Namespace) -> int:
    # every input is checked before any work starts
    readable_file(args.rule, "RULE.yaml")
    readable_file(args.events, "--events")
    if args.config:
        readable_file(args.config, "--config")

    from ..api.alertconfig import AlertConfigSpec
    from ..api.alertrule import AlertRuleSpec
    from ..events.pipeline import run_test_rule

    ns, name, rule = _load(args.rule, "AlertRule")
    assert isinstance(rule, AlertRuleSpec)
    if rule.events is None:
        raise UsageError(f"{name} is not an event rule (spec.events is not set)")
    config: AlertConfigSpec | None = None
    if args.config:
        _, _, cfg = _load(args.config, "AlertConfig")
        assert isinstance(cfg, AlertConfigSpec)
        config = cfg
    events, duplicates = read_events(args.events)
    report = run_test_rule(ns, name, rule, [ev.fields() for ev in events], config)
    if args.output == "json":
        print(json.dumps({**report.to_json(), "duplicates": duplicates}, indent=2))
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
    if duplicates:
        print(f"duplicates: {duplicates} (ids seen earlier in the file; the evaluator accepts an id once)")
    if report.suppressed:
        print("suppressed: " + ", ".join(f"{k}={v}" for k, v in sorted(report.suppressed.items())))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test-rule",
        help="run stored events through an event rule (match, dedup, cooldown, grouping)",
        description="Run events through an event AlertRule with the evaluator's own validation, matching, "
        "dedup, grouping and cooldown code. The events file holds one event (or a JSON array of events) "
        "per line, in the schema of POST /v1/events (docs/events.md); an event the evaluator would refuse "
        "is refused here. Exit 0 on success, 2 on usage errors (unreadable or invalid input).",
    )
    p.add_argument("rule", metavar="RULE.yaml", help="file holding the AlertRule")
    p.add_argument("--events", required=True, metavar="EVENTS.jsonl", help="one event (or a batch) per line")
    p.add_argument("--config", metavar="CONFIG.yaml", help="AlertConfig for grouping and silences (optional)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=run)
