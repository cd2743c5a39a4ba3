"""Generate the CustomResourceDefinitions from the pydantic models.

The output is a *structural* schema: every node typed, no ``$ref``/``anyOf``, scalar defaults
filled in by the API server (so CEL rules and `kubectl get -o yaml` see effective values),
descriptions that start with the field's name, and the models' CEL rules.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .constants import GROUP, VERSION
from .resources import KINDS, KindInfo

_KEEP = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "pattern",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
}
# Names CEL reserves: Kubernetes exposes such properties to CEL as __name__.
CEL_RESERVED = {
    "for",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
    "true",
    "false",
    "null",
}


class SchemaError(ValueError):
    pass


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target.update(extra)
            return _resolve(target, defs)
        if "allOf" in node and len(node["allOf"]) == 1:
            merged = copy.deepcopy(node["allOf"][0])
            merged.update({k: v for k, v in node.items() if k != "allOf"})
            return _resolve(merged, defs)
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) != 1:
                raise SchemaError(f"a union of {len(options)} types cannot be structural: {node}")
            merged = copy.deepcopy(options[0])
            merged.update({k: v for k, v in node.items() if k != "anyOf"})
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _clean(node: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    if "enum" in node and "type" not in node:
        node = {**node, "type": "string"}
    if "patternProperties" in node:
        ((key_pattern, value_schema),) = node["patternProperties"].items()
        key_rules = {**node.get("propertyNames", {}), "pattern": key_pattern}
        node = {**node, "additionalProperties": value_schema, "propertyNames": key_rules}
    for key, value in node.items():
        if key in _KEEP:
            out[key] = value
    # Scalar defaults go into the CRD so the API server fills them in and CEL rules can rely on them.
    if isinstance(node.get("default"), (str, int, float, bool)) and not isinstance(node.get("default"), type(None)):
        out["default"] = node["default"]
    if "exclusiveMinimum" in out and not isinstance(out["exclusiveMinimum"], bool):
        out["minimum"], out["exclusiveMinimum"] = out["exclusiveMinimum"], True
    if "exclusiveMaximum" in out and not isinstance(out["exclusiveMaximum"], bool):
        out["maximum"], out["exclusiveMaximum"] = out["exclusiveMaximum"], True
    if "description" in out and name:
        desc = " ".join(str(out["description"]).split())
        out["description"] = desc if desc.startswith(f"{name} ") else f"{name} {desc}"
    rules = list(out.get("x-kubernetes-validations", [])) + _key_rules(node.get("propertyNames") or {}, name)
    if rules:
        out["x-kubernetes-validations"] = rules
    if "properties" in out:
        out["properties"] = {k: _clean(v, k, f"{path}.{k}") for k, v in out["properties"].items()}
        out.setdefault("type", "object")
        for rule in out.get("x-kubernetes-validations", []):
            rule["rule"] = _escape_reserved(rule["rule"], set(out["properties"]))
    if "items" in out:
        out["items"] = _clean(out["items"], "", f"{path}[]")
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _clean(out["additionalProperties"], "", f"{path}{{}}")
    elif "additionalProperties" in out:
        del out["additionalProperties"]
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
    if "type" not in out:
        raise SchemaError(f"{path}: no type")
    return out


def _key_rules(names: dict[str, Any], name: str) -> list[dict[str, str]]:
    """CEL rules for a map's keys (structural schemas have no propertyNames)."""
    what = name or "map"
    rules = []
    if "pattern" in names:
        rule = f"self.all(k, k.matches({_cel_string(names['pattern'])}))"
        rules.append({"rule": rule, "message": f"{what} keys must match {names['pattern']}"})
    if "enum" in names:
        allowed, listed = ", ".join(f"'{v}'" for v in names["enum"]), ", ".join(names["enum"])
        rules.append({"rule": f"self.all(k, k in [{allowed}])", "message": f"{what} keys must be one of {listed}"})
    if "maxLength" in names:
        rules.append(
            {
                "rule": f"self.all(k, size(k) <= {names['maxLength']})",
                "message": f"{what} keys must be at most {names['maxLength']} characters",
            }
        )
    return rules


def _cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _escape_reserved(rule: str, props: set[str]) -> str:
    for word in CEL_RESERVED & props:
        rule = re.sub(rf"\.{word}\b", f".__{word}__", rule)
    return rule


def model_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _clean(_resolve(raw, defs), name, name)


def build_crd(info: KindInfo) -> dict[str, Any]:
    spec = model_schema(info.spec, "spec")
    spec["description"] = f"spec is the desired state of the {info.kind}. Required."
    status = model_schema(info.status, "status")
    status["description"] = "status is the observed state, written by Klaxon only."
    schema = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "apiVersion is klaxon.dev/v1alpha1."},
            "kind": {"type": "string", "description": f"kind is {info.kind}."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "klaxon", "app.kubernetes.io/part-of": "klaxon"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": ["klaxon"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_crd() for c in info.columns],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


HEADER = "# Generated by `make generate` (klaxon.api.crdgen) from the pydantic models. Do not edit.\n"


def render(info: KindInfo) -> str:
    return HEADER + yaml.safe_dump(build_crd(info), sort_keys=False, width=120, allow_unicode=True)


def write_all(out_dirs: list[Path]) -> list[Path]:
    written = []
    for info in KINDS.values():
        text = render(info)
        for d in out_dirs:
            d.mkdir(parents=True, exist_ok=True)
            target = d / info.file_name
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


def main() -> None:
    import sys

    dirs = [Path(a) for a in sys.argv[1:]] or [Path("crds")]
    for path in write_all(dirs):
        print(path)


if __name__ == "__main__":
    main()
