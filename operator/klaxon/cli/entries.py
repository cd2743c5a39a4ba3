"""``klaxon entries``: list the alert entries of event rules; acknowledge and tag them.

    klaxon entries [list] [-n NS | -A] [RULE] [-o table|json]
    klaxon entries ack RULE KEY [--by WHO] [-n NS]
    klaxon entries tag RULE KEY (--action TEXT | --root-cause TEXT) [--by WHO] [-n NS]

``ack`` and ``tag`` write the AlertRule's ``klaxon.dev/entries`` annotation (who and when are
recorded there); the evaluator applies it and shows the result in ``status.entries``. As a
kubectl plugin: ``kubectl klaxon entries ...``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

from ..api.constants import GROUP
from .errors import UsageError

if TYPE_CHECKING:
    from ..events.entries import Action
    from ..kube.client import KubeClient

#: klaxon.events.entries.ENTRIES_ANNOTATION (not imported: registering the command stays cheap)
ENTRIES_ANNOTATION = f"{GROUP}/entries"


def _who(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except Exception:  # no user name on this system
        return "unknown"


def entry_rows(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per open entry: rule, status fields, and who/when from the annotation's records."""
    from ..events.entries import parse_entries_annotation

    rows: list[dict[str, Any]] = []
    for rule in rules:
        meta = rule.get("metadata") or {}
        status = rule.get("status") or {}
        records, _ = parse_entries_annotation((meta.get("annotations") or {}).get(ENTRIES_ANNOTATION))
        by_key: dict[str, dict[str, Any]] = {}
        for rec in records:
            by_key.setdefault(rec.key, {})[rec.what] = rec.to_json()
        for e in status.get("entries") or []:
            rows.append(
                {
                    "namespace": meta.get("namespace", ""),
                    "rule": meta.get("name", ""),
                    **e,
                    "records": by_key.get(e.get("key", ""), {}),
                    "entriesCount": status.get("entriesCount", 0),
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ("namespace", "rule", "key", "state", "eventCount", "firstEventTime", "lastEventTime", "acked/tags")
    table = [list(cols)]
    for r in rows:
        tags = [f"ack:{r['acknowledgedBy']}"] if r.get("acknowledgedBy") else []
        tags += [f"action:{r['action']}"] if r.get("action") else []
        tags += [f"rootCause:{r['rootCause']}"] if r.get("rootCause") else []
        table.append([str(r.get(c, "")) for c in cols[:-1]] + [", ".join(tags) or "-"])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _prog(args: argparse.Namespace) -> str:
    return str(getattr(args, "prog", "klaxon"))  # tests call run_with without the parser's defaults


def _missing(args: argparse.Namespace) -> int:
    print(f"{_prog(args)} entries: AlertRule {args.namespace}/{args.rule} not found", file=sys.stderr)
    return 1


async def run_with(args: argparse.Namespace, kube: KubeClient) -> int:
    """The command against a cluster (tests pass a client bound to an emulated one)."""
    from ..api.alertconfig import AlertConfigSpec
    from ..api.refs import config_key
    from ..events.entries import Record, set_record, tag_problem
    from ..kube.client import Ref

    action = args.action or "list"
    rule_ref = Ref.klaxon("AlertRule", args.namespace, args.rule)
    if action == "list":
        return await _list(args, kube, rule_ref)

    what: Action
    text: str | None = None
    if action == "ack":
        what = "ack"
    elif args.action_text is not None:
        what, text = "action", args.action_text
    else:
        what, text = "rootCause", args.root_cause
    found = await kube.get(rule_ref)
    if found is None:
        return _missing(args)
    rule = found
    keys = {e.get("key") for e in (rule.get("status") or {}).get("entries") or []}
    if args.key not in keys and not args.force:
        print(
            f"{_prog(args)} entries: {args.rule} has no open entry {args.key!r} (use --force to record anyway)",
            file=sys.stderr,
        )
        return 1
    cfg_obj = await kube.get(Ref.klaxon("AlertConfig", *config_key(args.namespace, rule.get("spec"))))
    if cfg_obj is not None:
        settings = AlertConfigSpec.model_validate(cfg_obj.get("spec") or {}).entries
        problem = tag_problem(settings, what, text)
        if problem is None and what == "ack" and "button" not in settings.ack_mechanisms:
            problem = f"acknowledging by button is not enabled (ackMechanisms: {', '.join(settings.ack_mechanisms)})"
        if problem is not None:
            print(f"{_prog(args)} entries: {problem}", file=sys.stderr)
            return 2
    from datetime import UTC, datetime

    record = Record(args.key, what, _who(args), datetime.now(UTC).replace(microsecond=0), text)
    await kube.update_annotation(rule_ref, ENTRIES_ANNOTATION, lambda old: set_record(old, record))
    label = "acknowledged" if what == "ack" else f"tagged {what}={text!r}"
    print(f"{args.namespace}/{args.rule} entry {args.key}: {label} by {record.by}")
    return 0


async def _main(args: argparse.Namespace) -> int:
    from .cluster import cluster

    async with cluster(args.kubeconfig) as kube:
        return await run_with(args, kube)


def run(args: argparse.Namespace) -> int:
    if args.action in ("ack", "tag") and not (args.rule and args.key):
        raise UsageError("ack and tag need RULE and KEY")
    import asyncio

    return asyncio.run(_main(args))


ACTIONS = ("list", "ack", "tag")


def with_default_action(argv: list[str]) -> list[str]:
    """``entries -A`` / ``entries RULE -n NS`` mean ``entries list ...`` (as documented): argparse cannot
    make a subcommand optional and still take its options, so ``list`` is put in."""
    if argv[:1] == ["entries"] and len(argv) > 1 and argv[1] not in (*ACTIONS, "-h", "--help"):
        return ["entries", "list", *argv[1:]]
    return argv


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "entries",
        help="list, acknowledge and tag the alert entries of event rules",
        description="List open alert entries (AlertRule status) or record an acknowledgement / a tag in the "
        f"AlertRule's {ENTRIES_ANNOTATION} annotation, with who and when.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", default="default", help="the rule's namespace. Default: default")
    common.add_argument("--kubeconfig", default=None, help="kubeconfig outside a cluster. Default: the usual lookup")
    p.set_defaults(func=run, action=None, rule=None, all_namespaces=False, output="table")
    acts = p.add_subparsers(dest="action", metavar="ACTION")
    ls = acts.add_parser("list", parents=[common], help="list open entries (the default)")
    ls.add_argument("rule", nargs="?", metavar="RULE", help="only this AlertRule")
    ls.add_argument("-A", "--all-namespaces", action="store_true", help="rules of every namespace")
    ls.add_argument("-o", "--output", choices=("table", "json"), default="table")
    ack = acts.add_parser("ack", parents=[common], help="acknowledge an entry (stops its re-notification)")
    tag = acts.add_parser("tag", parents=[common], help="set an entry's action or root cause")
    for q in (ack, tag):
        q.add_argument("rule", metavar="RULE", help="the AlertRule")
        q.add_argument("key", metavar="KEY", help="the entry's key (as listed)")
        q.add_argument("--by", default=None, help="who does it. Default: the local user name")
        q.add_argument("--force", action="store_true", help="record even when no such entry is open")
    which = tag.add_mutually_exclusive_group(required=True)
    which.add_argument("--action", dest="action_text", default=None, metavar="TEXT", help="the action taken")
    which.add_argument("--root-cause", dest="root_cause", default=None, metavar="TEXT", help="the root cause")
    ack.set_defaults(action_text=None, root_cause=None)
    for q in (p, ls):
        q.set_defaults(namespace="default", kubeconfig=None)


async def _list(args: argparse.Namespace, kube: KubeClient, rule_ref: Any) -> int:
    """The open alert entries of one rule, a namespace's rules or all namespaces' rules."""
    from ..kube.client import Ref

    if args.rule:
        rule = await kube.get(rule_ref)
        if rule is None:
            return _missing(args)
        rules = [rule]
    else:
        rules = await kube.list(Ref.klaxon("AlertRule", None if args.all_namespaces else args.namespace))
    rows = entry_rows(rules)
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif rows:
        print_table(rows)
    else:
        print("no open alert entries")
    return 0
