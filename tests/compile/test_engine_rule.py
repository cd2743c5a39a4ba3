"""The AlertRule → EngineRule adapter on the shipped examples and the cases it must map exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from klaxon.api import AlertRuleSpec, parse_object
from klaxon.api.manifests import load_paths
from klaxon.compile.engine_rule import NotEvaluable, engine_rule
from klaxon.engine import replay, validate_rule

ROOT = Path(__file__).resolve().parents[2]


def spec(body: dict[str, object]) -> AlertRuleSpec:
    parsed = parse_object(
        {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertRule", "metadata": {"name": "r"}, "spec": body}
    )
    assert parsed.ok, parsed.problems
    assert isinstance(parsed.spec, AlertRuleSpec)
    return parsed.spec


def example_rules() -> list[tuple[str, AlertRuleSpec]]:
    out = []
    for doc in load_paths([ROOT / "examples"]):
        if isinstance(doc.body, dict) and doc.body.get("kind") == "AlertRule":
            parsed = parse_object(doc.body)
            assert isinstance(parsed.spec, AlertRuleSpec)
            out.append((parsed.name, parsed.spec))
    return out


@pytest.mark.parametrize(("name", "rule"), example_rules(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_metric_example_maps_to_a_valid_engine_rule(name: str, rule: AlertRuleSpec) -> None:
    if rule.events is not None:
        with pytest.raises(NotEvaluable):
            engine_rule(rule)
        return
    er = engine_rule(rule, key=f"default/{name}")
    assert validate_rule(er) == []
    assert 0 <= er.offset_s < er.interval_s


def test_dynamic_levels_and_trigger_map_field_by_field() -> None:
    er = engine_rule(
        spec(
            {
                "query": {"metric": "m", "window": "10m"},
                "condition": {"type": "dynamic", "upper": 200, "dynamic": {"mode": "stddev", "lookbackWeeks": 2}},
                "levels": {"warning": {"threshold": 3}, "critical": {"threshold": 5, "for": "5m"}},
                "trigger": {"requiredViolations": 3, "violationWindow": "5m"},
                "recovery": {"normalCount": 3, "window": "10m"},
                "evaluation": {"interval": "30s"},
            }
        )
    )
    assert er.kind == "dynamic" and er.interval_s == 30 and er.window_s == 600
    assert er.dynamic is not None and er.dynamic.lookback_weeks == 2 and er.dynamic.window_s == 600
    assert er.levels["critical"].threshold == 5 and er.levels["critical"].for_s == 300
    assert er.levels["warning"].required_violations == 3 and er.levels["warning"].violation_window_s == 300
    assert er.levels["warning"].upper == 200
    assert er.recovery.normal_count == 3 and er.recovery.window_s == 600


def test_a_level_without_for_inherits_trigger_for() -> None:
    er = engine_rule(
        spec(
            {
                "query": {"metric": "m"},
                "condition": {"type": "threshold", "operator": "gt"},
                "levels": {"warning": {"threshold": 3}, "critical": {"threshold": 5, "for": "10m"}},
                "trigger": {"for": "2m"},
            }
        )
    )
    assert er.levels["warning"].for_s == 120 and er.levels["critical"].for_s == 600


def test_single_level_follows_severity_and_schedule_maps_days() -> None:
    er = engine_rule(
        spec(
            {
                "severity": "critical",
                "query": {"metric": "m"},
                "condition": {"operator": "lt", "threshold": 0.85},
                "trigger": {"for": "5m"},
                "schedule": {
                    "timezone": "Europe/Berlin",
                    "windows": [{"days": ["Fri"], "start": "22:00", "end": "06:00"}],
                },
            }
        )
    )
    assert list(er.levels) == ["critical"] and er.operator == "lt" and er.levels["critical"].for_s == 300
    assert er.schedule is not None
    (w,) = er.schedule.windows
    assert (w.days, w.start_min, w.end_min) == (frozenset({4}), 22 * 60, 6 * 60)


def test_worked_example_through_the_adapter() -> None:
    """SEMANTICS §4: f=1m, V=5m, M=3, normalCount=3; Firing at the 5th point, Inactive at the 9th."""
    import numpy as np

    er = engine_rule(
        spec(
            {
                "query": {"metric": "m", "window": "1m", "aggregation": "last"},
                "condition": {"threshold": 10},
                "trigger": {"requiredViolations": 3, "violationWindow": "5m"},
                "recovery": {"normalCount": 3},
            }
        )
    )
    b = [0, 1, 0, 1, 1, 0, 0, 0, 0]
    times = np.arange(1, len(b) + 1, dtype=float) * 60
    values = np.array([20.0 if v else 0.0 for v in b])
    result = replay(er, times, values, start=60, end=len(b) * 60, warmup=0)
    moves = [(int(tr.t // 60), tr.to_state) for tr in result.transitions]
    assert moves == [(5, "Firing"), (7, "Recovering"), (9, "Inactive")]
