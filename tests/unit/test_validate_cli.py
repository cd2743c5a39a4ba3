"""`klaxon validate` against the examples and the valid/invalid corpora, through the real CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from klaxon.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests/data/invalid").glob("*.yaml"))
VALID = sorted((ROOT / "tests/data/valid").glob("*.yaml"))


def header(path: Path, key: str) -> str:
    match = re.search(rf"^# {key}: (.*)$", path.read_bytes().decode("utf-8", "replace"), re.M)
    assert match, f"{path.name} has no '# {key}:' line"
    return match.group(1)


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 30


def test_examples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "examples")]) == 0
    out = capsys.readouterr().out
    assert "0 invalid" in out
    assert out.count(": valid") >= 10


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_edge_cases_accepted(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_gives_its_message(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = header(path, "expect")
    assert main(["validate", "-q", str(path)]) == 1
    out = capsys.readouterr().out
    assert expected in out
    # Every line has the documented shape: file:doc: [kind/name: ]problem
    for line in out.splitlines():
        assert line.startswith(f"{path}:"), line


def test_one_bad_document_does_not_hide_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = (ROOT / "tests/data/valid/minimal-rule.yaml").read_text()
    bad = (ROOT / "tests/data/invalid/unknown-operator.yaml").read_text()
    (tmp_path / "mixed.yaml").write_text(good + "\n---\n" + bad + "\n---\n" + good.replace("minimal", "other"))
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "mixed.yaml:1: AlertRule/minimal: valid" in out
    assert "mixed.yaml:2: AlertRule/bad: spec.condition.operator: unknown value 'bigger'" in out
    assert "mixed.yaml:3: AlertRule/other: valid" in out
    assert "3 Klaxon object(s) checked, 1 invalid" in out


def test_non_klaxon_documents_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert main(["validate", str(tmp_path)]) == 0


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "klaxon.cli", "validate"]
    assert subprocess.run(cmd, capture_output=True).returncode == 2
    missing = subprocess.run([*cmd, str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr
