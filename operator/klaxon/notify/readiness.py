"""A NotificationChannel's ``Ready`` condition: its typed block is there, its templates compile,
every Secret it names resolves, and its URL's host is an address it may send to (SSRF guard)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic.alias_generators import to_camel

from ..api.channel import NotificationChannelSpec
from ..api.common import Condition, SecretKeySelector
from .model import SecretError
from .redact import Redactor
from .ssrf import BlockedAddress, check_host
from .templates import template_problem

#: Resolves a Secret key of a namespace (and registers the value for redaction).
SecretFn = Callable[[str, SecretKeySelector], Awaitable[str]]


def walk_refs(block: Any, prefix: str = "") -> list[tuple[str, SecretKeySelector]]:
    """The Secret keys a channel's typed block names, with their field paths (camelCase)."""
    out: list[tuple[str, SecretKeySelector]] = []
    for name in type(block).model_fields:
        value = getattr(block, name)
        if isinstance(value, SecretKeySelector):
            out.append((prefix + to_camel(name), value))
        elif isinstance(value, dict):
            out.extend(
                (f"{prefix}{to_camel(name)}.{k}", v)
                for k, v in value.items()
                if isinstance(v, SecretKeySelector)
            )
    return out


def url_host(url: str) -> str:
    """The host of an http(s) URL: no user info, no port, an IPv6 address without brackets."""
    return urlsplit(url).hostname or ""


class Readiness:
    """The Ready condition per channel; a condition that did not change keeps its transition time."""

    def __init__(self, secret: SecretFn, redactor: Redactor) -> None:
        self.secret, self.redactor = secret, redactor
        self.conditions: dict[tuple[str, str], Condition] = {}

    async def update(self, ns: str, name: str, spec: NotificationChannelSpec, allow_private: bool) -> Condition:
        """Check the channel again; the condition now in force."""
        ready = await self.check(ns, spec, allow_private)
        old = self.conditions.get((ns, name))
        if old is None or (old.status, old.reason, old.message) != (ready.status, ready.reason, ready.message):
            self.conditions[(ns, name)] = ready
        return self.conditions[(ns, name)]

    def _condition(self, ok: bool, reason: str, message: str) -> Condition:
        return Condition(
            type="Ready",
            status="True" if ok else "False",
            reason=reason,
            message=self.redactor.scrub(message),
            last_transition_time=datetime.now(UTC),
        )

    async def check(self, ns: str, spec: NotificationChannelSpec, allow_private: bool) -> Condition:
        """Ready: the typed block is there, every secret resolves, templates compile, address allowed."""
        block = getattr(spec, spec.type, None)
        if block is None:
            return self._condition(False, "InvalidSpec", f"type {spec.type} needs the {spec.type} block")
        for field_name in ("title", "body"):
            problem = template_problem(getattr(spec.templates, field_name))
            if problem:
                return self._condition(False, "InvalidTemplate", f"templates.{field_name}: {problem}")
        for path, ref in walk_refs(block):
            try:
                await self.secret(ns, ref)
            except SecretError:
                return self._condition(
                    False, "SecretNotFound", f"{spec.type}.{path}: Secret {ref.name} has no key {ref.key}"
                )
        url = getattr(block, "url", None)
        if isinstance(url, str) and not allow_private:
            try:
                await check_host(url_host(url))
            except BlockedAddress as exc:
                return self._condition(False, "AddressNotAllowed", str(exc))
        return self._condition(True, "Resolved", "configuration valid and every secret resolved")
