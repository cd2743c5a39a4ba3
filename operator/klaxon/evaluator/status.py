"""Rate-limited status writes: write a rule's status when it changed, or as a heartbeat."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from klaxon.kube.client import KubeError

log = logging.getLogger(__name__)

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


class TokenBucket:
    """`per_minute` tokens a minute, bursting up to one minute's worth; time is passed in (testable)."""

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.tokens = self.capacity
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class WriteReport:
    """What one `write_all` did: written, failed, and deferred for lack of budget (changes / heartbeats)."""

    written: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    deferred_changes: int = 0
    deferred_heartbeats: int = 0


#: With both waiting, one write in this many goes to a heartbeat (the rest to changes).
HEARTBEAT_SHARE = 5
#: Status writes of one cycle in flight at once: a cycle with many writes due takes about
#: writes / CONCURRENCY round trips instead of one round trip per write.
CONCURRENCY = 16


class StatusWriter:
    """Writes a status when its significant part changed or `heartbeat_s` passed since the last write.

    With `max_per_minute` (the AlertConfig's `evaluator.maxStatusWritesPerMinute`) writes draw
    from a token bucket: `write_all` spends it on changed statuses first (new rules included) —
    except that every ``HEARTBEAT_SHARE``-th write goes to the oldest due heartbeat — then on the
    remaining heartbeats, oldest first; what does not fit waits for the next cycle. The writes a
    cycle's budget admits go out concurrently, at most ``concurrency`` at a time.
    """

    def __init__(
        self, write: WriteFn, heartbeat_s: float, max_per_minute: float | None = None, concurrency: int = CONCURRENCY
    ) -> None:
        self._write = write
        self.heartbeat_s = heartbeat_s
        self.bucket = TokenBucket(max_per_minute) if max_per_minute is not None else None
        self.concurrency = max(1, concurrency)
        self._last: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self.writes = 0
        self._changes_since_beat = 0  # changes written since the last heartbeat, across cycles

    def configure(self, heartbeat_s: float, max_per_minute: float | None) -> None:
        """A changed AlertConfig (statusInterval, maxStatusWritesPerMinute): what was written stays
        known; a new budget starts with the tokens left (at most its own burst), not a full bucket."""
        self.heartbeat_s = heartbeat_s
        if max_per_minute is None:
            self.bucket = None
        elif self.bucket is None or self.bucket.capacity != max_per_minute:
            old, self.bucket = self.bucket, TokenBucket(max_per_minute)
            if old is not None:
                self.bucket.tokens = min(self.bucket.capacity, old.tokens)
                self.bucket._at = old._at

    def seed(self, namespace: str, name: str, status: Mapping[str, Any], at: float) -> None:
        """Remember a status already on the object (e.g. read at start) as written at `at`."""
        self._last[(namespace, name)] = (significant(status), at)

    def forget(self, namespace: str, name: str) -> None:
        self._last.pop((namespace, name), None)

    def changed(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        last = self._last.get((namespace, name))
        return last is None or last[0] != significant(status)

    async def write_all(self, items: Sequence[tuple[str, str, dict[str, Any]]], now: float) -> WriteReport:
        """Write what needs writing within the budget: changes first, then heartbeats (oldest first).

        A failed write is reported (and logged without the status) and retried next cycle.
        """
        report = WriteReport()
        changes, beats = [], []
        for ns, name, status in items:
            if self.changed(ns, name, status):
                changes.append((ns, name, status))
            elif self.needs_write(ns, name, status, now):
                beats.append((self._last[(ns, name)][1], ns, name, status))
        beats.sort(key=lambda b: b[0])
        # Changes first, but every HEARTBEAT_SHARE-th slot goes to the oldest due heartbeat: rules
        # changing all the time cannot starve the others of their heartbeat.
        # The count runs across cycles, so a budget of fewer than HEARTBEAT_SHARE writes per cycle
        # still gets its heartbeat turn.
        queue: list[tuple[bool, str, str, dict[str, Any]]] = []
        ci = bi = 0
        turn = self._changes_since_beat
        while ci < len(changes) or bi < len(beats):
            beat_turn = turn >= HEARTBEAT_SHARE - 1
            turn = 0 if beat_turn or ci >= len(changes) else turn + 1
            if bi < len(beats) and (ci >= len(changes) or beat_turn):
                _, ns, name, st = beats[bi]
                queue.append((False, ns, name, st))
                bi += 1
            else:
                queue.append((True, *changes[ci]))
                ci += 1
        admitted = queue
        if self.bucket is not None:
            for i in range(len(queue)):
                if not self.bucket.take(now):
                    admitted, rest = queue[:i], queue[i:]
                    report.deferred_changes = sum(1 for c, *_ in rest if c)
                    report.deferred_heartbeats = len(rest) - report.deferred_changes
                    break
        for is_change, *_ in admitted:
            self._changes_since_beat = self._changes_since_beat + 1 if is_change else 0
        sem = asyncio.Semaphore(self.concurrency)

        async def one(ns: str, name: str, status: dict[str, Any]) -> bool:
            async with sem:
                try:
                    await self._write(ns, name, status)
                except KubeError as e:  # an API failure: retried next cycle
                    log.warning("status write for %s/%s failed: %s", ns, name, e)
                    return False
                except Exception:  # not the API's answer: a bug, shown in full; the cycle goes on
                    log.exception("status write for %s/%s failed", ns, name)
                    return False
            self._last[(ns, name)] = (significant(status), now)
            self.writes += 1
            return True

        done = await asyncio.gather(*(one(ns, name, st) for _, ns, name, st in admitted))
        for (_, ns, name, _st), ok in zip(admitted, done, strict=True):
            (report.written if ok else report.failed).append((ns, name))
        return report

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
