"""Every metric the Grafana dashboard queries is one the code really exports, with the labels it uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts/klaxon/dashboards/klaxon.json"
#: Added by the scrape (target namespace, PodMonitor relabelings), not by the process.
SCRAPE_LABELS = {"namespace", "pod", "config", "shard", "job", "instance", "le"}


def exported() -> dict[str, set[str]]:
    """Sample names the operator and the evaluator register, with their label names."""
    import klaxon.operator.metrics  # noqa: F401  (registers on the default registry)
    from klaxon.evaluator.server import EvaluatorMetrics
    from klaxon.events.metrics import EventMetrics

    registries: list[CollectorRegistry] = [REGISTRY, EvaluatorMetrics().registry]
    events = CollectorRegistry()
    EventMetrics(events)
    registries.append(events)
    names: dict[str, set[str]] = {}
    for registry in registries:
        for family in registry.collect():
            labels: set[str] = set()
            for sample in family.samples:
                labels |= set(sample.labels)
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
            for suffix in suffixes.get(family.type, [""]):
                names[family.name + suffix] = labels
            # labelled metrics with no sample yet still declare their label names
            collector = getattr(registry, "_names_to_collectors", {}).get(family.name)
            if collector is not None:
                names_decl = set(getattr(collector, "_labelnames", ()))
                for suffix in suffixes.get(family.type, [""]):
                    names[family.name + suffix] |= names_decl
    return names


def test_dashboard_queries_only_exported_metrics_and_labels() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [json.dumps(v.get("query")) for v in dash["templating"]["list"]]
    have = exported()
    for expr in exprs:
        for name, selector in re.findall(r"(klaxon_[a-z_]+)(\{[^}]*\})?", expr):
            assert name in have, f"dashboard uses {name}, which no Klaxon process exports"
            used = set(re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", selector))
            unknown = used - have[name] - SCRAPE_LABELS
            assert not unknown, f"{name}: labels {unknown} are not exported"
        for label in re.findall(r"by \(([^)]*)\)", expr):
            names = re.findall(r"klaxon_[a-z_]+", expr)
            declared = set().union(*(have[n] for n in names)) | SCRAPE_LABELS
            assert {x.strip() for x in label.split(",")} <= declared, (expr, label)
