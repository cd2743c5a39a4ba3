"""Message templates: Jinja in an immutable sandbox over plain data only.

The context holds strings, numbers, lists and dicts built here — never model objects — and
the sandbox refuses underscore attributes, so ``{{ x.__class__ }}`` cannot reach internals.
A template that fails falls back to the built-in one; the error says why, never what.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, Undefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .model import Notification

DEFAULT_TITLE = "[{{ status | upper }}] {{ rule }} ({{ level or severity }})"
DEFAULT_BODY = (
    "{{ rule }} in {{ namespace }} is {{ state }}{% if value is not none %} (value {{ value }}){% endif %}.\n"
    "{% if annotations.summary %}{{ annotations.summary }}\n{% endif %}"
    "{% if annotations.description %}{{ annotations.description }}\n{% endif %}"
    "Key: {{ dedup_key }}\nTime: {{ time }}\n"
    "{% for k, v in labels | dictsort %}{{ k }}={{ v }}\n{% endfor %}"
)
MAX_RENDERED = 16384


class _Sandbox(ImmutableSandboxedEnvironment):
    """Raise on unsafe access instead of rendering it empty, so the author learns at once."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} is not allowed")


_env = _Sandbox(autoescape=False, undefined=ChainableUndefined, keep_trailing_newline=False)


@lru_cache(maxsize=256)
def _compile(source: str) -> Any:
    return _env.from_string(source)


def context(n: Notification, kind: str) -> dict[str, Any]:
    """Plain data for templates (and for payload builders)."""
    status = "resolved" if kind == "resolved" else ("test" if kind == "test" else "firing")
    return {
        "rule": n.rule_name,
        "namespace": n.rule_namespace,
        "status": status,
        "kind": kind,
        "state": n.state_to,
        "from_state": n.state_from,
        "level": n.level,
        "severity": n.severity,
        "value": n.value,
        "time": n.time.isoformat(),
        "labels": dict(n.labels),
        "annotations": dict(n.annotations),
        "dedup_key": n.dedup_key,
        "episode": n.episode_id,
    }


def template_problem(source: str | None) -> str | None:
    """Why a template does not compile, or None."""
    if source is None:
        return None
    try:
        _compile(source)
    except TemplateError as exc:
        return f"template does not compile: {exc.message or type(exc).__name__}"
    return None


def render(source: str | None, default: str, ctx: Mapping[str, Any]) -> tuple[str, str | None]:
    """Rendered text and an error note when ``source`` failed and the default was used."""
    if source is not None:
        try:
            return _compile(source).render(**ctx)[:MAX_RENDERED], None
        except Exception as exc:
            note = f"template failed ({type(exc).__name__}); used the built-in one"
            return _compile(default).render(**ctx)[:MAX_RENDERED], note
    return _compile(default).render(**ctx)[:MAX_RENDERED], None
