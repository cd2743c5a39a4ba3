"""Rate-limited status writes: write a rule's status when it changed, or as a heartbeat."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

WriteFn = Callable[[str, str, dict[str, Any]], Awaitable[None]]

#: engineState fields that move every evaluation of a violating series without changing its state.
#: After a restart they are as old as the last write (at most one heartbeat): a recovery window or
#: an N-of-M count may then be off by what happened since, never a state or a notification.
_VOLATILE_ENGINE = ("lastEvaluation", "lastValue", "lastViolation", "violations")


def significant(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status without what changes every cycle: evaluation time and current values.

    `lastEvaluation` (time, value, message), each active series' `value` and its engineState's
    `lastEvaluation`/`lastValue`/`lastViolation`/`violations` are ignored; states, levels, reasons, since-times and the
    counters of the state machine are compared. The heartbeat refreshes the rest.
    """
    out = copy.deepcopy(dict(status))
    out.pop("lastEvaluation", None)
    for item in out.get("activeSeries") or []:
        item.pop("value", None)
        engine = item.get("engineState")
        if isinstance(engine, dict):
            for k in _VOLATILE_ENGINE:
                engine.pop(k, None)
    return out


class StatusWriter:
    """Writes a status when its significant part changed or `heartbeat_s` passed since the last write."""

    def __init__(self, write: WriteFn, heartbeat_s: float) -> None:
        self._write = write
        self.heartbeat_s = heartbeat_s
        self._last: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self.writes = 0

    def seed(self, namespace: str, name: str, status: Mapping[str, Any], at: float) -> None:
        """Remember a status already on the object (e.g. read at start) as written at `at`."""
        self._last[(namespace, name)] = (significant(status), at)

    def forget(self, namespace: str, name: str) -> None:
        self._last.pop((namespace, name), None)

    def needs_write(self, namespace: str, name: str, status: Mapping[str, Any], now: float) -> bool:
        last = self._last.get((namespace, name))
        if last is None:
            return True
        sig, at = last
        return sig != significant(status) or now - at >= self.heartbeat_s

    async def maybe_write(self, namespace: str, name: str, status: dict[str, Any], now: float) -> bool:
        """Write if needed; True when written. A failed write raises and is retried next cycle."""
        if not self.needs_write(namespace, name, status, now):
            return False
        await self._write(namespace, name, status)
        self._last[(namespace, name)] = (significant(status), now)
        self.writes += 1
        return True
