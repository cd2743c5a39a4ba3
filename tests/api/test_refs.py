"""``klaxon.api.refs``: the one answer to "which AlertConfig does this rule use", "may it", "at
which interval" and "which namespaces does the evaluator follow", for parsed and raw specs alike."""

from __future__ import annotations

from typing import Any

import pytest

from klaxon.api import AlertConfigSpec, AlertRuleSpec
from klaxon.api.refs import config_key, effective_interval, granted_namespaces, namespace_allowed, rules_scope


def rule(**spec: Any) -> AlertRuleSpec:
    return AlertRuleSpec.model_validate({"query": {"metric": "m"}, "condition": {"threshold": 1}, **spec})


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({}, ("team", "default")),
        ({"configRef": {"name": "main"}}, ("team", "main")),
        ({"configRef": {"name": "main", "namespace": "mon"}}, ("mon", "main")),
    ],
)
def test_config_key_is_the_same_for_the_parsed_and_the_raw_spec(spec: dict[str, Any], key: tuple[str, str]) -> None:
    assert config_key("team", rule(**spec)) == key
    assert config_key("team", spec) == key


@pytest.mark.parametrize("raw", [None, "not a spec", {"configRef": "main"}, {"configRef": {"namespace": "mon"}}])
def test_config_key_of_an_unusable_reference_is_the_namespace_default(raw: Any) -> None:
    assert config_key("team", raw) == ("team", "default")


def test_effective_interval_rule_then_config_then_one_minute() -> None:
    config = AlertConfigSpec.model_validate({"defaults": {"interval": "5m"}})
    assert effective_interval(rule(evaluation={"interval": "30s"}), config) == "30s"
    assert effective_interval(rule(), config) == "5m"
    assert effective_interval(rule(), AlertConfigSpec()) == "1m"
    assert effective_interval(rule()) == "1m"


def test_namespace_allowed_and_the_evaluators_scope() -> None:
    assert namespace_allowed("mon", config_namespace="mon", allowed=[])
    assert namespace_allowed("team", config_namespace="mon", allowed=["team"])
    assert namespace_allowed("any", config_namespace="mon", allowed=["*"])
    assert not namespace_allowed("other", config_namespace="mon", allowed=["team"])
    assert rules_scope("mon", ["team", "b"]) == ["b", "mon", "team"]
    granted = granted_namespaces({"status": {"grantedNamespaces": ["x", "mon"]}})
    assert rules_scope("mon", ["*"], granted) == ["mon", "x"]  # '*': where the operator granted access
    assert rules_scope("mon", ["*"], granted_namespaces({})) == ["mon"]
