"""Fixes to kopf that thousands of objects need (kopf 1.45; a no-op when kopf changes shape).

Wake-ups (``wake_toggle_waiters_on_flip``): at startup kopf makes one toggle per listed object
of an indexed kind and keeps every object's worker waiting until all are dropped (the indices
are complete). Adding or dropping each toggle wakes every waiting worker, whose state did not
change: N² wake-ups, minutes of CPU for 10,000 AlertRules. Here adding and dropping wake the
waiters only when the set's state flips. A member toggle's own state is not changed by either,
so its waiters need no wake-up either.

Bodies (``drop_managed_fields``): at startup every listed object's body waits in its worker's
queue until all are indexed, 10,000 AlertRules and their 10,000 PrometheusRules at once. Neither
kopf nor Klaxon reads ``metadata.managedFields``, 35-40 % of such a body: it is dropped as the
watch yields the object.

Applied to the kopf minor version it was read against only (``KNOWN_KOPF``): on another one the
patch stays off and tests/operator/test_kopf_fixes.py fails, so an upgrade re-reads kopf first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching

_PATCHED = "_klaxon_patched"
KNOWN_KOPF = "1.45."


def wake_toggle_waiters_on_flip() -> None:
    cls: Any = aiotoggles.ToggleSet
    if getattr(cls, _PATCHED, False) or not version("kopf").startswith(KNOWN_KOPF) or not all(
        hasattr(cls, a) for a in ("make_toggle", "drop_toggle", "drop_toggles", "is_on")
    ):
        return

    async def make_toggle(self: Any, __val: bool = False, *, name: str | None = None) -> Any:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            was = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != was:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self: Any, toggle: Any) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.discard(toggle)
            if self.is_on() != was:
                self._condition.notify_all()

    async def drop_toggles(self: Any, toggles: Any) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != was:
                self._condition.notify_all()

    cls.make_toggle, cls.drop_toggle, cls.drop_toggles = make_toggle, drop_toggle, drop_toggles
    setattr(cls, _PATCHED, True)


async def without_managed_fields(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The watch's events with each object's ``metadata.managedFields`` dropped (bookmarks pass)."""
    async for event in events:
        obj = event.get("object") if isinstance(event, dict) else None
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        yield event


def drop_managed_fields() -> None:
    original: Any = getattr(watching, "infinite_watch", None)
    if original is None or getattr(original, _PATCHED, False) or not version("kopf").startswith(KNOWN_KOPF):
        return

    def infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
        return without_managed_fields(original(**kwargs))

    setattr(infinite_watch, _PATCHED, True)
    watching.infinite_watch = infinite_watch
