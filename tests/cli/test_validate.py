"""`klaxon validate` as a user runs it: positions, YAML as kubectl reads it, warnings, exit codes.

The corpora are judged layer by layer in tests/api/test_corpus.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from klaxon.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
GOOD = """apiVersion: klaxon.dev/v1alpha1
kind: AlertRule
metadata:
  name: {name}
spec:
  query:
    metric: up
  condition:
    threshold: 1
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def test_examples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, str(ROOT / "examples"))
    assert code == 0, out
    assert "0 invalid" in out
    assert out.count(": valid") >= 10


def test_positions_are_the_line_each_document_starts_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = GOOD.format(name="bad").replace("threshold: 1", "threshold: high")
    text = "# leading comment\n" + GOOD.format(name="one") + "---\n" + bad + "---\n\n" + GOOD.format(name="three")
    (tmp_path / "mixed.yaml").write_text(text)
    code, out = run(capsys, str(tmp_path / "mixed.yaml"))
    assert code == 1
    lines = text.splitlines()
    starts = [i + 1 for i, line in enumerate(lines) if line.startswith("apiVersion")]
    assert f"mixed.yaml:{starts[0]}: AlertRule/one: valid" in out
    assert f"mixed.yaml:{starts[1]}: AlertRule/bad: spec.condition.threshold: must be a number, got 'high'" in out
    assert f"mixed.yaml:{starts[2]}: AlertRule/three: valid" in out
    assert "3 Klaxon object(s) checked, 1 invalid" in out


def test_a_yaml_error_in_one_document_hides_no_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = "apiVersion: klaxon.dev/v1alpha1\nkind: AlertRule\nmetadata: {name: broken\n"
    text = (
        GOOD.format(name="one")
        + "---\n"
        + GOOD.format(name="two")
        + "---\n"
        + broken
        + "---\n"
        + GOOD.format(name="four")
    )
    (tmp_path / "f.yaml").write_text(text)
    code, out = run(capsys, str(tmp_path / "f.yaml"))
    assert code == 1
    assert "AlertRule/one: valid" in out and "AlertRule/two: valid" in out and "AlertRule/four: valid" in out
    third = text.splitlines().index("metadata: {name: broken") + 1
    assert f"f.yaml:{third - 2}: invalid YAML at line {third + 1}" in out, out


def test_duplicate_keys_name_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.yaml").write_text(GOOD.format(name="d") + "    threshold: 5\n")
    code, out = run(capsys, str(tmp_path / "d.yaml"))
    assert code == 1
    assert "duplicate key 'threshold' at lines 9 and 10" in out


def test_times_are_strings_and_nulls_unset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = "  schedule:\n    windows:\n    - {start: 22:00, end: 06:00}\n  mute: null\n  levels: ~\n"
    (tmp_path / "t.yaml").write_text(GOOD.format(name="t") + extra)
    code, out = run(capsys, str(tmp_path / "t.yaml"))
    assert code == 0, out


def test_empty_input_warns_and_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing yet\n---\n# still nothing\n")
    code, out = run(capsys, str(tmp_path))
    assert code == 0
    assert "empty.yaml:1: warning: no documents" in out and "comments.yaml:1: warning: no documents" in out
    (tmp_path / "sub").mkdir()
    code, out = run(capsys, str(tmp_path / "sub"))
    assert code == 0 and "warning: no YAML files" in out


def test_unknown_channel_names_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rule = GOOD.format(name="r") + "  notify:\n    channels: [ops-slack, pager]\n"
    channel = "apiVersion: klaxon.dev/v1alpha1\nkind: NotificationChannel\nmetadata: {name: pager}\nspec:\n"
    channel += "  type: webhook\n  webhook: {urlSecret: {name: s, key: url}}\n"
    (tmp_path / "r.yaml").write_text(rule + "---\n" + channel)
    code, out = run(capsys, str(tmp_path / "r.yaml"))
    assert code == 0, out
    assert "warning: spec.notify.channels[0]: NotificationChannel 'ops-slack' is not defined" in out
    assert "'pager' is not defined" not in out


def test_hidden_dirs_and_helm_templates_are_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.yaml").write_text("{{ broken")
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "d.yaml").write_text("{{- if .Values.x }}\n")
    (tmp_path / "r.yaml").write_text(GOOD.format(name="r"))
    code, out = run(capsys, str(tmp_path))
    assert code == 0, out


def test_non_klaxon_documents_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert main(["validate", str(tmp_path)]) == 0


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "klaxon.cli", "validate"]
    assert subprocess.run(cmd, capture_output=True).returncode == 2
    missing = subprocess.run([*cmd, str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr
