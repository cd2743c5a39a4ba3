"""Preview of every example rule on its sample data returns the documented transitions, exactly.

The same tables are in examples/data/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from klaxon.engine.types import iso
from klaxon.preview.data import load_file
from klaxon.preview.run import FileSource, PreviewError, PreviewResult, load_rule, run_preview

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
DATA = EX / "data"

Row = tuple[str, str, str, str, str | None, str]


def preview(rule_file: str, data: str, rule: str | None = None) -> PreviewResult:
    ref = load_rule(EX / rule_file, rule)
    return run_preview(ref, FileSource(load_file(DATA / data)).fetch)


def rows(res: PreviewResult) -> list[Row]:
    out: list[Row] = []
    blocks = [(s.member, s.result) for s in res.series]
    if res.rule_series is not None:
        blocks.append(("<rule>", res.rule_series))
    for member, r in blocks:
        for tr in r.transitions:
            out.append((member, str(iso(tr.t)), tr.from_state, tr.to_state, tr.level, tr.reason))
    return out


def test_model_accuracy_per_device() -> None:
    res = preview("10-model-accuracy.yaml", "10-model-accuracy.csv")
    assert [s.member for s in res.series] == ["device_id=edge-cam-01", "device_id=edge-cam-02", "device_id=edge-cam-03"]
    assert res.total_members == 3  # edge-cam-04 is outside the rule's scope
    assert (iso(res.start), iso(res.end)) == ("2026-06-24T06:05:00Z", "2026-06-24T17:59:00Z")
    assert rows(res) == [
        ("device_id=edge-cam-01", "2026-06-24T14:05:30Z", "Inactive", "Pending", "critical", "ConditionMet"),
        ("device_id=edge-cam-01", "2026-06-24T14:10:30Z", "Pending", "Inactive", None, "ConditionBroken"),
        ("device_id=edge-cam-02", "2026-06-24T10:05:30Z", "Inactive", "Pending", "critical", "ConditionMet"),
        ("device_id=edge-cam-02", "2026-06-24T10:10:30Z", "Pending", "Firing", "critical", "Triggered"),
        ("device_id=edge-cam-02", "2026-06-24T10:44:30Z", "Firing", "Inactive", None, "Recovered"),
    ]
    s = res.series[1].result.summary
    assert (s.points, s.violations, s.alarms, s.time_in_alarm_s) == (714, 39, 1, 34 * 60)


def test_api_latency_dynamic_members_levels_and_latest_labels() -> None:
    res = preview("12-api-latency-dynamic.yaml", "12-api-latency.csv")
    assert (iso(res.start), iso(res.end), res.warmup_s) == ("2026-06-24T08:00:00Z", "2026-06-24T19:59:00Z", 28 * 86400)
    assert [s.member for s in res.series] == ["host=api-1", "host=api-2"]
    # api-1 was redeployed at 12:00: the latest representative labels carry the new version
    assert res.series[0].labels == {"host": "api-1", "service": "checkout", "version": "1.5.0"}
    assert rows(res) == [
        ("host=api-2", "2026-06-24T14:04:33Z", "Inactive", "Firing", "warning", "Triggered"),
        ("host=api-2", "2026-06-24T14:11:33Z", "Firing", "Firing", "critical", "Escalated"),
        ("host=api-2", "2026-06-24T14:35:33Z", "Firing", "Firing", "warning", "Deescalated"),
        ("host=api-2", "2026-06-24T14:36:33Z", "Firing", "Recovering", "warning", "ConditionCleared"),
        ("host=api-2", "2026-06-24T14:43:33Z", "Recovering", "Inactive", None, "Recovered"),
    ]
    s = res.series[1].result.summary
    assert (s.points, s.violations, s.alarms, s.time_in_alarm_s, s.low_confidence_points) == (719, 35, 1, 39 * 60, 2)
    p = res.series[1].result.points
    assert p.baseline_points[300] == 20  # 4 weeks x 5 one-minute samples in each 5m window


def test_high_error_rate_from_prometheus_json() -> None:
    # a raw expr is compared as it is at each evaluation (its data are its values), as compiled
    res = preview("13-generic-rules.yaml", "13-high-error-rate.json", "high-error-rate")
    assert rows(res) == [
        ("", "2026-06-24T03:00:00Z", "Inactive", "Firing", "critical", "Triggered"),
        ("", "2026-06-24T03:15:00Z", "Firing", "Inactive", None, "Recovered"),
    ]


def test_heartbeat_absence_from_openmetrics() -> None:
    res = preview("13-generic-rules.yaml", "13-heartbeat.om", "heartbeat-missing")
    assert rows(res) == [
        ("", "2026-06-24T02:09:03Z", "Inactive", "Firing", "warning", "Triggered"),
        ("", "2026-06-24T02:45:03Z", "Firing", "Inactive", None, "Recovered"),
    ]


def test_composite_operands_from_one_file() -> None:
    res = preview("13-generic-rules.yaml", "13-slow-and-failing.json", "slow-and-failing")
    assert [s.member for s in res.series] == ["latency", "errors"]
    assert [r for r in rows(res) if r[0] == "<rule>"] == [
        ("<rule>", "2026-06-24T04:10:51Z", "Inactive", "Firing", "warning", "Triggered"),
        ("<rule>", "2026-06-24T04:20:51Z", "Firing", "Inactive", None, "Recovered"),
    ]
    # the 01:00 latency spike alone does not fire the rule (logic: all)
    assert [r[1] for r in rows(res) if r[0] == "latency"] == [
        "2026-06-24T01:01:51Z",
        "2026-06-24T01:12:51Z",
        "2026-06-24T04:01:51Z",
        "2026-06-24T04:33:51Z",
    ]


def test_composite_operands_from_separate_files(tmp_path: Path) -> None:
    one = load_file(DATA / "13-slow-and-failing.json")
    ref = load_rule(EX / "13-generic-rules.yaml", "slow-and-failing")
    lat = [s for s in one if s.labels.get("__name__")]
    err = [s for s in one if s.labels.get("operand") == "errors"]
    res = run_preview(ref, FileSource(per_operand={"latency": lat, "errors": err}).fetch)
    assert rows(res) == rows(preview("13-generic-rules.yaml", "13-slow-and-failing.json", "slow-and-failing"))


def test_composite_without_operand_data_names_the_fix() -> None:
    ref = load_rule(EX / "13-generic-rules.yaml", "slow-and-failing")
    with pytest.raises(PreviewError, match=r"x.csv: no series for operand 'latency'.*--data latency=FILE"):
        run_preview(ref, FileSource(load_file(DATA / "10-model-accuracy.csv"), names=["x.csv"]).fetch)


@pytest.mark.parametrize("name", ["11-night-person-detection.yaml", "14-alertconfig-events.yaml"])
def test_event_rules_are_not_previewable(name: str) -> None:
    ref = load_rule(EX / name)
    with pytest.raises(PreviewError, match="event rule; preview replays metric rules only"):
        run_preview(ref, FileSource().fetch)


def test_file_with_several_rules_needs_rule_name() -> None:
    with pytest.raises(PreviewError, match=r"pick one with --rule NAME.*high-error-rate, heartbeat-missing"):
        load_rule(EX / "13-generic-rules.yaml")
    with pytest.raises(PreviewError, match="no AlertRule named 'nope'"):
        load_rule(EX / "13-generic-rules.yaml", "nope")
    with pytest.raises(PreviewError, match="no AlertRule found"):
        load_rule(EX / "00-alertconfig-default.yaml")
