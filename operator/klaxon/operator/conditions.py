"""Conditions as Kubernetes expects them, computed purely from the previous list and what is true now."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 4096


@dataclass(frozen=True)
class Cond:
    type: str
    ok: bool | None  # None: Unknown
    reason: str
    message: str = ""

    @property
    def status(self) -> str:
        return "Unknown" if self.ok is None else "True" if self.ok else "False"


def now_iso() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_from(conds: Sequence[Cond], ok_reason: str = "Ready", ok_message: str = "") -> Cond:
    """``Ready`` is True when every condition is; otherwise it carries the first failing one's reason."""
    for cond in conds:
        if cond.ok is not True:
            return Cond("Ready", False if cond.ok is False else None, cond.reason, cond.message)
    return Cond("Ready", True, ok_reason, ok_message)


def build_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    wanted: Sequence[Cond],
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """The new list: ``lastTransitionTime`` moves only when a condition's status changes."""
    old = {str(c.get("type")): c for c in previous or () if isinstance(c, Mapping)}
    stamp = now or now_iso()
    out: list[dict[str, Any]] = []
    for cond in wanted:
        before = old.get(cond.type)
        changed = before is None or before.get("status") != cond.status
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message[:MAX_MESSAGE],
            "lastTransitionTime": stamp
            if changed or before is None
            else before.get("lastTransitionTime", stamp),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        out.append(entry)
    return out


def transitions(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Conditions whose status or reason differs from before: each deserves an Event."""
    old = {str(c.get("type")): c for c in previous or () if isinstance(c, Mapping)}
    return [
        c
        for c in current
        if (before := old.get(str(c["type"]))) is None
        or (before.get("status"), before.get("reason")) != (c["status"], c["reason"])
    ]


def status_changed(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Whether writing ``wanted`` (a merge patch of status fields) would change anything."""
    current = current or {}
    return any(current.get(k) != v for k, v in wanted.items())
