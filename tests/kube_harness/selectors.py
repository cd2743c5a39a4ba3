"""Label- and field-selector matching for the emulated Kubernetes API.

kmock 0.8 ignores ``labelSelector``/``fieldSelector`` on list & watch, so an
operator that relies on server-side filtering would see foreign objects in
tests but not in a cluster. This module implements the documented basics:
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``
for labels, and ``path=v``/``path==v``/``path!=v`` for fields.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_RE = re.compile(r'^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*$')
_EQ_RE = re.compile(r'^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$')
_EXISTS_RE = re.compile(r'^\s*(!?)\s*([^\s!=(),]+)\s*$')


class SelectorError(ValueError):
    """A selector string that the real API would reject with 400."""


def _split_requirements(selector: str) -> list[str]:
    """Split on commas that are not inside ``(...)`` of set-based requirements."""
    parts: list[str] = []
    depth = 0
    current = ''
    for char in selector:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def parse_label_selector(selector: str | None) -> Matcher:
    """Compile a label selector into a predicate over an object body."""
    if not selector:
        return lambda body: True
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for requirement in _split_requirements(selector):
        if m := _SET_RE.match(requirement):
            key, op, raw_values = m.groups()
            values = {v.strip() for v in raw_values.split(',') if v.strip()}
            if op == 'in':
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := _EQ_RE.match(requirement):
            key, op, value = m.groups()
            if op == '!=':
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := _EXISTS_RE.match(requirement):
            negated, key = m.groups()
            if negated:
                checks.append(lambda labels, k=key: k not in labels)
            else:
                checks.append(lambda labels, k=key: k in labels)
        else:
            raise SelectorError(f"Unparseable label selector requirement: {requirement!r}")

    def match(body: Mapping[str, Any]) -> bool:
        labels = (body.get('metadata') or {}).get('labels') or {}
        return all(check(labels) for check in checks)
    return match


def _resolve_field(body: Mapping[str, Any], path: str) -> str | None:
    value: Any = body
    for part in path.split('.'):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if value is None:
        return None
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def parse_field_selector(selector: str | None) -> Matcher:
    """Compile a field selector (``metadata.name=x,status.phase!=y``) into a predicate."""
    if not selector:
        return lambda body: True
    checks: list[Matcher] = []
    for requirement in _split_requirements(selector):
        m = _EQ_RE.match(requirement)
        if not m:
            raise SelectorError(f"Unparseable field selector requirement: {requirement!r}")
        path, op, value = m.groups()
        if op == '!=':
            checks.append(lambda body, p=path, v=value: _resolve_field(body, p) != v)
        else:
            checks.append(lambda body, p=path, v=value: _resolve_field(body, p) == v)
    return lambda body: all(check(body) for check in checks)
