"""Event rules (seeds 001 and 004) and ``klaxon test-rule``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec, EventFilter
from klaxon.cli.main import main
from klaxon.events import match_event, run_test_rule

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def test_matched_conditions_in_fixed_order() -> None:
    flt = EventFilter(
        risk_threshold=30, object_types=["person"], cameras=["door"], zones=["z1"], min_confidence=0.7
    )
    ev = {
        "risk_score": 30,
        "object_types": ["car", "person"],
        "camera_id": "door",
        "zone_id": "z1",
        "confidence": 0.7,
        "time": "2025-01-15T12:00:00Z",
    }
    assert match_event(ev, flt, None) == (
        True,
        ["riskThreshold", "objectTypes", "cameras", "zones", "minConfidence"],
    )
    assert match_event({**ev, "camera_id": "garage"}, flt, None) == (
        False,
        ["riskThreshold", "objectTypes", "zones", "minConfidence"],
    )
    assert match_event({"time": "2025-01-15T12:00:00Z"}, EventFilter(), None) == (True, [])


def test_cli_test_rule_seed_001(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "test-rule",
            str(ROOT / "examples/11-night-person-detection.yaml"),
            "--events",
            str(DATA / "events.jsonl"),
            "-o",
            "json",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["eventsTested"], report["eventsMatched"], report["matchRate"]) == (10, 6, 0.6)
    by_id = {r["eventId"]: r for r in report["results"]}
    assert by_id["1"]["wouldNotify"] and by_id["1"]["dedupKey"] == "front_door:person"
    assert by_id["1"]["matchedConditions"] == ["riskThreshold", "objectTypes", "minConfidence", "schedule"]
    assert (by_id["2"]["wouldNotify"], by_id["2"]["suppressedBy"]) == (False, "cooldown")
    assert by_id["3"]["wouldNotify"] and by_id["3"]["dedupKey"] == "garage:person"  # other key, own window
    assert by_id["7"]["wouldNotify"]  # exactly t0 + 10m: a new window
    assert by_id["8"]["suppressedBy"] == "cooldown"
    assert by_id["9"]["matched"] is False and "schedule" not in by_id["9"]["matchedConditions"]  # daytime
    assert by_id["6"]["matchedConditions"] == ["riskThreshold", "objectTypes", "schedule"]  # low confidence
    assert report["suppressed"] == {"cooldown": 2}


def test_cli_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "test-rule",
                str(ROOT / "examples/11-night-person-detection.yaml"),
                "--events",
                str(DATA / "events.jsonl"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "events tested: 10" in out and "events matched: 6" in out and "match rate: 60.00%" in out


def test_cli_rejects_metric_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "e.jsonl").write_text("")
    assert (
        main(
            [
                "test-rule",
                str(ROOT / "examples/10-model-accuracy.yaml"),
                "--events",
                str(tmp_path / "e.jsonl"),
            ]
        )
        == 2
    )


def _seed004() -> tuple[AlertRuleSpec, AlertConfigSpec]:
    import yaml

    docs = list(yaml.safe_load_all((ROOT / "examples/14-alertconfig-events.yaml").read_text()))
    cfg = next(d for d in docs if d["kind"] == "AlertConfig")["spec"]
    rule = next(d for d in docs if d["kind"] == "AlertRule")["spec"]
    return AlertRuleSpec.model_validate(rule), AlertConfigSpec.model_validate(cfg)


def test_seed_004_grouping_min_events_and_zone_silence() -> None:
    rule, cfg = _seed004()
    t0 = datetime(2025, 1, 18, 12, 0, tzinfo=UTC)  # a Saturday: whole-day window in New York

    def ev(i: int, sec: int, zone: str) -> dict[str, object]:
        return {
            "id": i,
            "camera_id": "cam1",
            "zone_id": zone,
            "object_type": "person",
            "risk_score": 80,
            "confidence": 0.9,
            "time": (t0 + timedelta(seconds=sec)).isoformat(),
        }

    events = [
        ev(1, 0, "perimeter-north"),
        ev(2, 30, "perimeter-north"),
        ev(3, 60, "perimeter-north"),
        ev(4, 90, "perimeter-north"),
        ev(5, 0, "loading-dock"),
        ev(6, 10, "loading-dock"),
        ev(7, 20, "loading-dock"),
        ev(8, 400, "perimeter-north"),
    ]
    report = run_test_rule("site", "perimeter-intrusion", rule, events, cfg)
    r = {x.event_id: x for x in report.results}
    assert [r[i].suppressed_by for i in ("1", "2")] == ["minEvents", "minEvents"]
    assert r["3"].would_notify and r["3"].dedup_key == "perimeter-north"  # 3rd event within 2m opens
    assert r["4"].suppressed_by == "cooldown"  # absorbed, and inside the 15m cooldown
    assert r["7"].suppressed_by == "silence"  # loading-dock is silenced until 2030
    assert r["8"].suppressed_by == "minEvents"  # the alert closed; a lone event opens nothing
