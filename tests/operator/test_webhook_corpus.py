"""The admission webhook rejects every spec problem of the invalid corpus with the CLI's own message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from klaxon.api.manifests import load_file
from klaxon.operator.webhook import admission_message, admission_problems

ROOT = Path(__file__).resolve().parents[2]


def spec_cases() -> list[Path]:
    out = []
    for path in sorted((ROOT / "tests/data/invalid").glob("*.yaml")):
        expect = re.search(r"^# expect: (.*)$", path.read_bytes().decode("utf-8", "replace"), re.M)
        if expect and expect.group(1).startswith("spec"):
            out.append(path)
    return out


@pytest.mark.parametrize("path", spec_cases(), ids=lambda p: p.stem)
def test_webhook_rejects_with_the_same_message(path: Path) -> None:
    expected = re.search(r"^# expect: (.*)$", path.read_text(), re.M).group(1)  # type: ignore[union-attr]
    (doc,) = load_file(path)
    problems = admission_problems(doc.body["kind"], doc.body)
    assert problems
    assert expected in admission_message(doc.body["kind"], doc.body, problems)


def test_corpus_cases_are_many() -> None:
    assert len(spec_cases()) >= 40
