"""Admission: the same checks, field paths and messages as `klaxon validate` and the status conditions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from ..api import API_VERSION
from ..api.alertrule import AlertRuleSpec
from ..api.problems import Problem
from ..api.validation import parse_object
from ..compile import engine_problems


def admission_problems(kind: str, body: Mapping[str, Any]) -> list[Problem]:
    """Every problem of the object, metadata included: never raises, whatever the body holds."""
    # The API server routes by group, version and kind: the review's object is of this kind.
    parsed = parse_object({"apiVersion": API_VERSION, **body, "kind": kind} if isinstance(body, Mapping) else body)
    problems = list(parsed.problems)
    if isinstance(parsed.spec, AlertRuleSpec):
        problems += engine_problems(parsed.spec)
    return problems


def admission_message(kind: str, body: Mapping[str, Any], problems: list[Problem]) -> str:
    raw = body.get("metadata")
    meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    name = meta.get("name") or meta.get("generateName") or "?"
    return f"{kind} {name} is invalid: " + "; ".join(map(str, problems))


def validator(kind: str) -> Any:
    """A kopf.on.validate handler for ``kind``: rejects with every problem (field, what, allowed)."""

    def validate(body: kopf.Body, operation: str | None = None, **_: Any) -> None:
        if operation == "DELETE":
            return
        raw = dict(body)
        problems = admission_problems(kind, raw)
        if problems:
            raise kopf.AdmissionError(admission_message(kind, raw, problems), code=422)

    validate.__name__ = f"validate_{kind.lower()}"
    return validate
