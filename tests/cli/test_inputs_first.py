"""``test-rule`` validates events as ``POST /v1/events`` does, and commands check every input
before any work starts (a bad ``--plot`` path is not found after a long replay)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import klaxon.events.pipeline
import klaxon.preview.run
from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.cli.main import main
from support.events import event, make_service, running_service

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
RULE_FILE = EX / "11-night-person-detection.yaml"
T0 = datetime(2025, 1, 15, 23, 0, tzinfo=UTC)

#: Each a batch of three where the middle one differs from a valid event (docs/events.md's cases).
PATCHES: list[dict[str, Any]] = [
    {},
    {"risk_score": "80"},
    {"id": 5},
    {"timestamp": "2025-01-15T23:00:00"},
    {"timestamp": "yesterday"},
    {"confidence": True},
    {"colour": "red"},
    {"cameraId": "x"},
    {"labels": {"camera_id": "x"}},
    {"object_types": "person"},
    {"risk_score": float("nan")},
]


def _line(batch: list[dict[str, Any]]) -> str:
    return json.dumps(batch, allow_nan=True)


async def _post(batch: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    cfg = AlertConfigSpec.model_validate({"events": {"token": {"name": "t", "key": "token"}}})
    service, registry = make_service(cfg)
    service.set_rule("default", "night-person", AlertRuleSpec.model_validate({"events": {"riskThreshold": 30}}))
    async with running_service(service, registry) as app:
        status, body, _ = await app.post(None, raw=_line(batch).encode())
        return status, body


@pytest.mark.parametrize("patch", PATCHES, ids=[json.dumps(p) for p in PATCHES])
async def test_test_rule_refuses_exactly_what_post_events_refuses(
    patch: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = [event(i, T0 + timedelta(minutes=i)) for i in range(3)]
    batch[1] = {**batch[1], **patch}
    status, body = await _post(batch)

    events = tmp_path / "events.jsonl"
    events.write_text(_line(batch) + "\n")
    code = main(["test-rule", str(RULE_FILE), "--events", str(events), "-o", "json"])
    out, err = capsys.readouterr()
    if status == 202:
        assert code == 0, err
        assert json.loads(out)["eventsTested"] == body["accepted"] == 3
        return
    assert status == 400 and code == 2, (body, err)
    served = {(e["index"], e["field"]) for e in body["errors"]}
    said = {(int(m[1]), m[2] or None) for m in re.finditer(r":1: \[(\d+)\](?: (\S+):)? ", err)}
    assert said == served, (err, body)


async def test_repeated_ids_count_as_duplicates_in_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = event("a", T0), event("b", T0 + timedelta(minutes=1))
    status, body = await _post([a, b, a])
    events = tmp_path / "events.jsonl"
    events.write_text(_line([a, b, a]) + "\n")
    assert main(["test-rule", str(RULE_FILE), "--events", str(events), "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (status, body["accepted"], body["duplicates"]) == (202, 2, 1)
    assert (doc["eventsTested"], doc["duplicates"]) == (2, 1)


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay and the event pipeline refuse to run: a command must fail before it gets there."""

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before every input was checked")

    monkeypatch.setattr(klaxon.preview.run, "run_preview", started)
    monkeypatch.setattr(klaxon.events.pipeline, "run_test_rule", started)


@pytest.mark.parametrize(
    "argv",
    [
        ["preview", "{ex}/10-model-accuracy.yaml", "--data", "{ex}/data/10-model-accuracy.csv",
         "--plot", "{tmp}/missing/dir/plot.png"],
        ["preview", "{ex}/10-model-accuracy.yaml", "--data", "{ex}/data/10-model-accuracy.csv",
         "--plot", "{tmp}/x.jpg"],
        ["preview", "{ex}/10-model-accuracy.yaml", "--data", "{ex}/data/10-model-accuracy.csv",
         "--data", "{tmp}/missing.csv"],
        ["preview", "{ex}/10-model-accuracy.yaml", "--prometheus", "http://127.0.0.1:9",
         "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z", "--ca-file", "{tmp}/missing.pem"],
        ["test-rule", "{ex}/11-night-person-detection.yaml", "--events", "{ex}/data/11-night-person-events.jsonl",
         "--config", "{tmp}/missing.yaml"],
        ["test-rule", "{ex}/11-night-person-detection.yaml", "--events", "{tmp}/bad.jsonl"],
    ],
    ids=["plot-dir", "plot-format", "data", "ca-file", "config", "invalid-event"],
)
def test_inputs_are_checked_before_any_work(
    argv: list[str], no_work: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.jsonl").write_text(_line([event(1, T0), {**event(2, T0), "risk_score": "80"}]) + "\n")
    code = main([a.format(ex=EX, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "work started" not in err and err.count("\n") >= 1
    assert not (tmp_path / "missing").exists()  # nothing created on the way out
