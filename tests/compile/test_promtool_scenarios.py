"""Behaviour of compiled rules in the real Prometheus rule engine (``promtool test rules``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from compile_harness import build_files, run_promtool_check, run_promtool_test
from scenarios import INJECTION, SCENARIOS


def test_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 25
    ids = [s.id for s in SCENARIOS + INJECTION]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("scenario", SCENARIOS + INJECTION, ids=lambda s: s.id)
def test_scenario(scenario, promtool: str, tmp_path: Path) -> None:
    rules_path, test_path, _ = build_files(scenario, tmp_path)
    check = run_promtool_check(promtool, rules_path)
    assert check.returncode == 0, check.stdout + check.stderr
    result = run_promtool_test(promtool, test_path)
    assert result.returncode == 0, (
        f"{result.stdout}{result.stderr}\n--- rules ---\n{rules_path.read_text()}"
    )


@pytest.mark.parametrize("broken", ["regex_quote", "string_literal"])
def test_injection_scenario_catches_broken_escaping(broken: str, promtool: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The injection scenario is a real test: with either escape step removed it fails."""
    from klaxon.compile import promql

    if broken == "regex_quote":
        monkeypatch.setattr(promql, "regex_quote", lambda v: v)
    else:
        monkeypatch.setattr(promql, "string_literal", lambda v: '"' + v.replace('"', '\\"') + '"')
    scenario = next(s for s in INJECTION if s.id == "injection_selector_and_scope")
    rules_path, test_path, _ = build_files(scenario, tmp_path)
    check = run_promtool_check(promtool, rules_path)
    result = run_promtool_test(promtool, test_path)
    assert check.returncode != 0 or result.returncode != 0
