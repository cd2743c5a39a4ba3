"""Evaluate a CRD's x-kubernetes-validations the way the API server does, with cel-python.

The API server applies schema defaults first, exposes CEL-reserved property names as
``__name__`` and date-time strings as timestamps; this module does the same so a rule that
passes here means what it means in a cluster.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import celpy

from klaxon.api import crdgen

CEL_RESERVED = crdgen.CEL_RESERVED

_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


@dataclass(frozen=True)
class Violation:
    path: str
    message: str
    rule: str


def program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule))
    return _PROGRAMS[rule]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        return out
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: apply_defaults(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def to_cel(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict):
        if "properties" in schema:
            props = schema["properties"]
            return celpy.celtypes.MapType(
                {
                    celpy.celtypes.StringType(f"__{k}__" if k in CEL_RESERVED else k): to_cel(props.get(k, {}), v)
                    for k, v in value.items()
                }
            )
        inner = schema.get("additionalProperties") or {}
        return celpy.celtypes.MapType({celpy.celtypes.StringType(k): to_cel(inner, v) for k, v in value.items()})
    if isinstance(value, list):
        return celpy.celtypes.ListType([to_cel(schema.get("items", {}), v) for v in value])
    if isinstance(value, str) and schema.get("format") == "date-time":
        return celpy.celtypes.TimestampType(value)
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return celpy.celtypes.DoubleType(float(value))  # a JSON number of a number field is a double
    return celpy.json_to_cel(value)


def violations(schema: dict[str, Any], value: Any, path: str = "") -> list[Violation]:
    """Every CEL rule in ``schema`` that ``value`` breaks (defaults applied first)."""
    value = apply_defaults(schema, value)
    return _walk(schema, value, path)


def _walk(schema: dict[str, Any], value: Any, path: str) -> list[Violation]:
    found: list[Violation] = []
    for entry in schema.get("x-kubernetes-validations", []):
        try:
            result = program(entry["rule"]).evaluate({"self": to_cel(schema, value)})
        except celpy.CELEvalError as exc:  # the API server refuses on an evaluation error too
            result = exc
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            found.append(Violation(path + entry.get("fieldPath", ""), entry["message"], entry["rule"]))
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name in value:
                found += _walk(sub, value[name], f"{path}.{name}" if path else name)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for k, v in value.items():
            found += _walk(schema["additionalProperties"], v, f"{path}.{k}")
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            found += _walk(schema["items"], v, f"{path}[{i}]")
    return found


def all_rules(schema: dict[str, Any]) -> list[str]:
    rules = [e["rule"] for e in schema.get("x-kubernetes-validations", [])]
    for sub in schema.get("properties", {}).values():
        rules += all_rules(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            rules += all_rules(schema[key])
    return rules
