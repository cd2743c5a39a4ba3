"""A problem people can act on: the field, what is wrong, what is allowed; pydantic's errors told that way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .alertrule import DEDUP_KEY_PATTERN
from .channel import (
    HEADER_VALUE_PATTERN,
)
from .common import (
    ANNOTATION_KEY_PATTERN,
    DURATION_PATTERN,
    HHMM_PATTERN,
    K8S_LABEL_VALUE_PATTERN,
    K8S_NAME_PATTERN,
    LABEL_NAME_PATTERN,
    NAMESPACE_PATTERN,
    QUALIFIED_NAME_PATTERN,
)

INVALID_QUERY = "InvalidQuery"
INVALID_QUERY = "InvalidQuery"


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str
    allowed: str = ""
    reason: str = ""  # a CamelCase word for conditions when more specific than InvalidSpec

    def __str__(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        return f"{text} (allowed: {self.allowed})" if self.allowed else text


@dataclass
class Parsed:
    kind: str
    name: str
    namespace: str | None
    spec: BaseModel | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


PATTERN_HINTS = {
    DURATION_PATTERN: "a duration such as 30s, 5m or 1h30m; units ms, s, m, h",
    HHMM_PATTERN: "a time HH:MM from 00:00 to 24:00",
    LABEL_NAME_PATTERN: "a Prometheus label name: letters, digits and _, not starting with a digit",
    K8S_NAME_PATTERN: "a Kubernetes name: lower-case letters, digits, '-' and '.'",
    NAMESPACE_PATTERN: "a namespace name: lower-case letters, digits and '-', at most 63 characters",
    ANNOTATION_KEY_PATTERN: "a Kubernetes annotation key: an optional DNS prefix and '/', then at most 63 "
    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    QUALIFIED_NAME_PATTERN: "a Kubernetes label key: an optional DNS prefix and '/', then at most 63 letters, "
    "digits, '-', '_' or '.', starting and ending with a letter or digit",
    K8S_LABEL_VALUE_PATTERN: "a Kubernetes label value: at most 63 letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit",
    HEADER_VALUE_PATTERN: "one line of text: no CR, LF or other control characters",
    DEDUP_KEY_PATTERN: "text with {field} placeholders (letters, digits, _); write {{ and }} for literal braces",
}


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that a location inside ``model`` points into (for listing its fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        by_alias = {f.alias or n: f for n, f in current.model_fields.items()}
        field = by_alias.get(str(part)) or current.model_fields.get(str(part))
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """The model inside Optional[...] / list[...] / dict[..., ...], if any."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _unwrap(arg)
        if found is not None:
            return found
    return None if get_origin(tp) is not None or not isinstance(tp, type) else tp


def _field_names(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or n for n, f in model.model_fields.items())


def from_validation_error(exc: ValidationError, model: type[BaseModel], prefix: str) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        etype, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
        key_error = bool(loc) and loc[-1] == "[key]"
        if key_error:
            loc = loc[:-2]  # a bad key is the map's problem (as the API server and CEL report it)
        path = _path((prefix, *loc)) if prefix else _path(loc)
        if key_error and etype in ("string_pattern_mismatch", "string_too_long"):
            problems.append(_key_problem(path, etype, ctx, given))
            continue
        problem = _shape_problem(path, etype, ctx, given, model, loc) or _type_problem(path, etype, ctx, given)
        if problem is None and etype == "value_error":
            text, _, allowed = str(ctx.get("error", err["msg"])).partition(" (allowed: ")
            problem = Problem(path, text, allowed.rstrip(")"))
        problems.append(problem or Problem(path, err["msg"]))
    return problems


def _key_problem(path: str, etype: str, ctx: dict[str, Any], given: Any) -> Problem:
    if etype == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(str(ctx.get("pattern")), f"a key matching {ctx.get('pattern')}")
        return Problem(path, f"invalid key {given!r}", hint)
    return Problem(path, f"key {given!r} is too long", f"at most {ctx.get('max_length')} characters")


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _shape_problem(
    path: str, etype: str, ctx: dict[str, Any], given: Any, model: type[BaseModel], loc: tuple[Any, ...]
) -> Problem | None:
    """Missing and unknown fields, values outside an enum, a pattern, a length or a range."""
    if etype == "missing":
        return Problem(path, "required field is missing")
    if etype == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        return Problem(path, "unknown field", ", ".join(_field_names(parent)) if parent else "")
    if etype == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return Problem(path, f"unknown value {given!r}", expected)
    if etype == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(str(ctx.get("pattern")), f"a string matching {ctx.get('pattern')}")
        return Problem(path, f"invalid value {given!r}", hint)
    if etype == "string_too_short":
        return Problem(path, "must not be empty", f"at least {ctx.get('min_length')} character")
    if etype == "string_too_long":
        return Problem(path, f"too long ({len(str(given))} characters)", f"at most {ctx.get('max_length')} characters")
    if etype == "too_long":
        return Problem(path, f"too many items ({ctx.get('actual_length')})", f"at most {ctx.get('max_length')}")
    if etype == "too_short":
        return Problem(path, f"too few items ({ctx.get('actual_length')})", f"at least {ctx.get('min_length')}")
    if etype in _BOUNDS:
        limit = next(iter(ctx.values()), "")
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return Problem(path, f"out of range ({given!r})", f"{_BOUNDS[etype]} {limit}")
    return None


def _type_problem(path: str, etype: str, ctx: dict[str, Any], given: Any) -> Problem | None:
    """A value of the wrong type."""
    if etype == "model_type" and ctx.get("class_name") == "SecretKeySelector":
        return Problem(path, "inline credentials are not allowed", "a Secret reference {name: <secret>, key: <key>}")
    if etype in ("model_type", "dict_type", "model_attributes_type"):
        return Problem(path, f"must be an object, got {type(given).__name__}", "an object")
    if etype == "list_type":
        return Problem(path, f"must be a list, got {type(given).__name__}", "a list")
    if etype in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        want = "an integer" if etype.startswith("int") else "a number"
        return Problem(path, f"must be {want}, got {given!r}", want)
    if etype in ("bool_parsing", "bool_type"):
        return Problem(path, f"must be a boolean, got {given!r}", "true, false")
    if etype == "string_type":
        return Problem(path, f"must be a string, got {type(given).__name__}", "a string")
    if etype in ("datetime_parsing", "datetime_type", "datetime_from_date_parsing"):
        return Problem(path, f"invalid time {given!r}", "an RFC 3339 time such as 2026-01-31T18:00:00Z")
    if etype == "finite_number":
        return Problem(path, "must be a finite number", "a finite number")
    return None
