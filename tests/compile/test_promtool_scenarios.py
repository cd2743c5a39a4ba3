"""Behaviour of compiled rules in the real Prometheus rule engine (``promtool test rules``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from compile_harness import build_files, run_promtool_check, run_promtool_test
from scenarios import SCENARIOS


def test_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 25
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_scenario(scenario, promtool: str, tmp_path: Path) -> None:
    rules_path, test_path, _ = build_files(scenario, tmp_path)
    check = run_promtool_check(promtool, rules_path)
    assert check.returncode == 0, check.stdout + check.stderr
    result = run_promtool_test(promtool, test_path)
    assert result.returncode == 0, (
        f"{result.stdout}{result.stderr}\n--- rules ---\n{rules_path.read_text()}"
    )
