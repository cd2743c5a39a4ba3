"""The generated CRDs: in sync with the models, structural, documented, and their CEL rules right."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from klaxon.api import KINDS
from klaxon.api.crdgen import render
from klaxon.api.manifests import load_yaml_all
from support import apiserver, cel

ROOT = Path(__file__).resolve().parents[2]
CRDS = {k: yaml.safe_load((ROOT / "crds" / info.file_name).read_text()) for k, info in KINDS.items()}
VALID_DOCS = [
    (p, d)
    for p in sorted([*(ROOT / "tests/data/valid").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")])
    for d in load_yaml_all(p.read_text())
    if d and d.get("apiVersion") == "klaxon.dev/v1alpha1"
]


def schema_of(kind: str) -> dict[str, Any]:
    version = CRDS[kind]["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("kind", list(KINDS))
def test_committed_crd_matches_models(kind: str) -> None:
    committed = (ROOT / "crds" / KINDS[kind].file_name).read_text()
    assert committed == render(KINDS[kind]), "crds/ is stale: run `make generate`"


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural(kind: str) -> None:
    for path, node in walk(schema_of(kind)):
        assert "type" in node, f"{path}: untyped node"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "not", "$defs", "nullable", "patternProperties"):
            assert banned not in node, f"{path}: {banned} is not allowed in a structural schema"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            # Only the evaluator's opaque counting state may hold arbitrary fields.
            assert path.endswith(".engineState"), f"{path}: preserve-unknown-fields is not justified here"
        if node["type"] == "object" and path.count(".") > 1 and path != ".metadata":
            assert (
                "properties" in node
                or "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), f"{path}: object without fields would be pruned"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_field_is_documented_by_name(kind: str) -> None:
    for path, node in walk(schema_of(kind)):
        name = re.split(r"[.\[{]", path)[-1] if path else ""
        if not name or path.endswith(("[]", "{}")) or path in (".apiVersion", ".kind", ".metadata"):
            continue
        desc = node.get("description", "")
        assert desc.startswith(f"{name} "), f"{path}: description must start with the field name: {desc!r}"
        if path.startswith(".spec."):
            assert re.search(r"default|required|optional", desc, re.I), (
                f"{path}: say the default or that it is required"
            )


def test_printer_columns_and_names() -> None:
    rule = CRDS["AlertRule"]["spec"]
    cols = {c["name"]: c for c in rule["versions"][0]["additionalPrinterColumns"]}
    assert [c for c in cols if "priority" not in cols[c]] == ["State", "Severity", "Last-Eval", "Ready", "Age"]
    assert {c for c in cols if cols[c].get("priority") == 1} == {"Engine", "Reason"}
    assert rule["names"]["shortNames"] == ["ar"] and rule["names"]["categories"] == ["klaxon"]
    assert CRDS["AlertConfig"]["spec"]["names"]["shortNames"] == ["ac"]
    assert CRDS["NotificationChannel"]["spec"]["names"]["shortNames"] == ["nc"]
    for crd in CRDS.values():
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_cel_rule_compiles(kind: str) -> None:
    rules = cel.all_rules(schema_of(kind))
    assert rules
    for rule in rules:
        cel.program(rule)


@pytest.mark.parametrize(("path", "doc"), VALID_DOCS, ids=lambda v: getattr(v, "stem", ""))
def test_valid_objects_pass_schema_and_cel(path: Path, doc: dict[str, Any]) -> None:
    assert apiserver.decide(doc) == ("stored", [])


def test_cel_key_rules_reject_bad_label_names() -> None:
    doc = yaml.safe_load((ROOT / "tests/data/invalid/label-name-with-dash.yaml").read_text())
    found = cel.violations(schema_of("AlertRule"), doc)
    assert [v.path for v in found] == ["spec.labels"]


def _unbounded(node: dict[str, Any], path: str) -> list[str]:
    """The string, list and map nodes directly at ``node`` that give the CEL cost estimator no size."""
    kind = node.get("type")
    # date-time strings are CEL timestamps, which the estimator sizes by their format.
    if kind == "string" and "maxLength" not in node and "enum" not in node and node.get("format") != "date-time":
        return [f"{path}: string without maxLength"]
    if kind == "array" and "maxItems" not in node:
        return [f"{path}: list without maxItems"]
    if kind == "object" and isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
        return [f"{path}: map without maxProperties"]
    return []


def _cel_inputs_unbounded(node: dict[str, Any], path: str, enclosing: list[str]) -> list[str]:
    """Every unbounded input of every CEL rule: the rule's own subtree and the lists/maps around it.

    The API server multiplies a rule's estimated cost by the largest number of times it can run
    (the maxItems/maxProperties of every enclosing list and map), and estimates the cost of what
    it reads from maxLength/maxItems/maxProperties; a missing bound counts as "as large as the
    request" and the CRD is refused (kube-apiserver: "estimated rule cost exceeds budget").
    """
    problems: list[str] = []
    here = _unbounded(node, path)
    if node.get("x-kubernetes-validations"):
        problems += enclosing
        problems += [p for sub_path, sub in walk(node, path) for p in _unbounded(sub, sub_path)]
    around = enclosing + [p for p in here if "string" not in p]
    for name, sub in node.get("properties", {}).items():
        problems += _cel_inputs_unbounded(sub, f"{path}.{name}", around)
    if isinstance(node.get("items"), dict):
        problems += _cel_inputs_unbounded(node["items"], f"{path}[]", around)
    if isinstance(node.get("additionalProperties"), dict):
        problems += _cel_inputs_unbounded(node["additionalProperties"], f"{path}{{}}", around)
    return problems


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_cel_input_is_bounded(kind: str) -> None:
    problems = sorted(set(_cel_inputs_unbounded(schema_of(kind), "", [])))
    assert problems == [], "CEL rules read unbounded values (a real API server refuses the CRD):\n" + "\n".join(
        problems
    )


def test_bounds_check_sees_a_missing_bound() -> None:
    schema = {
        "type": "object",
        "properties": {
            "windows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "x-kubernetes-validations": [{"rule": "self.start != self.end"}],
                    "properties": {"start": {"type": "string"}, "end": {"type": "string", "maxLength": 5}},
                },
            }
        },
    }
    assert sorted(_cel_inputs_unbounded(schema, "", [])) == [
        ".windows: list without maxItems",
        ".windows[].start: string without maxLength",
    ]
