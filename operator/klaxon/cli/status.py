"""`klaxon status` (also `kubectl klaxon status`): which rules fire, which are not in effect, and why."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..kube.client import KubeClient

#: Summary buckets, most urgent first; NotReady counts rules whose Ready condition is not True.
ORDER = ("Firing", "Pending", "Recovering", "NoData", "Error", "Inactive", "Muted", "Disabled", "Unknown")


def _ready(status: Mapping[str, Any]) -> tuple[str, str]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status", "Unknown")), str(cond.get("reason", ""))
    return "Unknown", ""


def rows(rules: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One plain row per rule, sorted by urgency, then namespace/name."""
    out = []
    for rule in rules:
        meta, status = rule.get("metadata") or {}, rule.get("status") or {}
        ready, reason = _ready(status)
        state = str(status.get("state") or "Unknown")
        out.append(
            {
                "namespace": meta.get("namespace", ""),
                "name": meta.get("name", ""),
                "state": state,
                "level": status.get("level") or "",
                "ready": ready,
                "reason": status.get("reason") or reason,
                "lastEvaluation": (status.get("lastEvaluation") or {}).get("time") or "",
                "activeSeries": int(status.get("activeSeriesCount") or 0),
            }
        )
    rank = {s: i for i, s in enumerate(ORDER)}
    return sorted(out, key=lambda r: (rank.get(r["state"], len(ORDER)), r["namespace"], r["name"]))


def summary(table: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(r["state"] for r in table)
    out = {s: counts[s] for s in ORDER if counts[s]}
    out["NotReady"] = sum(r["ready"] != "True" for r in table)
    return out


def render_table(table: list[dict[str, Any]]) -> str:
    headers = ["NAMESPACE", "NAME", "STATE", "LEVEL", "READY", "REASON", "LAST-EVAL", "SERIES"]
    keys = ["namespace", "name", "state", "level", "ready", "reason", "lastEvaluation", "activeSeries"]
    cells = [headers, *[[str(r[k]) for k in keys] for r in table]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    counts = summary(table)
    lines.append("")
    lines.append(f"{len(table)} rule(s): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


async def run_with(args: argparse.Namespace, kube: KubeClient) -> int:
    from ..kube.client import Ref

    namespace = None if args.all_namespaces else args.namespace
    table = rows(await kube.list(Ref.klaxon("AlertRule", namespace)))
    if args.output == "json":
        print(json.dumps({"rules": table, "summary": summary(table)}, indent=2))
    else:
        print(render_table(table))
    return 0


async def _main(args: argparse.Namespace) -> int:
    from .cluster import cluster

    async with cluster(args.kubeconfig) as kube:
        return await run_with(args, kube)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="summarise AlertRules by state (firing first) and show why a rule is not in effect",
        description="List AlertRules with state, level, Ready and reason, and count them by state.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default="default", help="namespace to list (default: default)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="list every namespace")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_main(args))
