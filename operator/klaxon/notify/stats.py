"""Per-channel delivery statistics and what they tell people.

Durable: counts, the last delivery and test delivery, ``failingSince`` and ``lastError`` live in
the outbox next to the rows (written in the same transaction as a row's outcome), so status
survives restarts. In this process: counters for metrics (delivered, failed attempts, given up by
reason) and which channels fail. Reported: channel status (``status.queue``, Ready turning False
while deliveries fail; coalesced, at most one write per channel per interval) and Events when a
channel starts failing, recovers, or had notifications given up.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from ..api.channel import Delivery, DeliveryQueue, NotificationChannelStatus, delivery_failing
from ..api.common import Condition, format_duration
from .model import StatusSink
from .outbox import Outbox, Row
from .redact import LOG
from .registry import Key, Registry

#: Why a notification was given up (the ``reason`` label of the given-up metric).
GiveUp = Literal["maxAge", "notRetryable", "queueFull", "channelNotFound"]
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


def stats_key(ns: str, name: str) -> str:
    return f"stats:{ns}/{name}"


class ChannelStats:
    """The statistics of every channel (see the module docstring); ``spawn`` runs a report in the
    background so that a slow API never holds a delivery up."""

    def __init__(self, outbox: Outbox, registry: Registry, status: StatusSink, spawn: Spawn) -> None:
        self.outbox, self.registry, self.status, self.spawn = outbox, registry, status, spawn
        #: counters for metrics (this process): given up by reason, delivered, failed attempts
        self.given_up: Counter[tuple[str, str, str]] = Counter()
        self.delivered: Counter[Key] = Counter()
        self.failed_attempts: Counter[Key] = Counter()
        #: channels whose deliveries fail, since when (mirrors the durable channel stats)
        self.failing: dict[Key, float] = {}
        #: channels whose status is to be written
        self.dirty: set[Key] = set()
        #: give-ups not yet reported by an Event: channel -> (count, last text)
        self._gave_up_unreported: dict[Key, tuple[int, str]] = {}

    def known(self, ns: str, name: str) -> None:
        """A channel was (re)declared: it fails still if it failed before a restart."""
        stats = self.outbox.get_meta(stats_key(ns, name)) or {}
        if stats.get("failingSince") is not None:
            self.failing[(ns, name)] = float(stats["failingSince"])

    def forget(self, ns: str, name: str) -> None:
        self.failing.pop((ns, name), None)

    # -- outcomes (inside the outbox transaction of the row) ------------------------------------
    def finish_final(
        self, row: Row, ok: bool, attempts: int, message: str, now: float, gave_up: bool = False
    ) -> dict[str, Any]:
        """Mark a row delivered or given up and count it in the channel's stats (inside a transaction)."""
        test = row.kind == "test"
        self.outbox.finish(row.id, "delivered" if ok else "failed", attempts, message, now)
        key = stats_key(row.namespace, row.channel)
        stats = self.outbox.get_meta(key) or {"delivered": 0, "failed": 0}
        delivery = {
            "time": datetime.now(UTC).isoformat(),
            "outcome": "Delivered" if ok else "Failed",
            "message": (f"test {row.notification['episode_id']}: " if test else "") + message,
        }
        if test:
            stats["lastTest"] = delivery
        else:
            stats["delivered" if ok else "failed"] += 1
            stats["last"] = delivery
        if gave_up and not stats.get("failingSince"):
            stats["lastError"] = message
        self.outbox.put_meta(key, stats)
        return stats

    def record(
        self, row: Row, ok: bool, attempts: int, message: str, now: float, retry_at: float | None, gave_up: bool
    ) -> float | None:
        """Write the outcome of an attempt (row + channel stats in one transaction), count it and
        report the channel starting to fail or working again. Returns since when the channel was
        failing before this outcome (None: it was not)."""
        key = stats_key(row.namespace, row.channel)
        attempted = attempts > row.attempts  # False: given up without trying (too old, channel unknown)

        def write() -> float | None:
            if retry_at is not None:
                self.outbox.finish(row.id, "pending", attempts, message, now, retry_at)
                stats = self.outbox.get_meta(key) or {"delivered": 0, "failed": 0}
            else:
                stats = self.finish_final(row, ok, attempts, message, now, gave_up=gave_up)
            was_failing: float | None = stats.get("failingSince")
            if ok:
                stats.pop("failingSince", None)
                stats.pop("lastError", None)
            elif attempted:
                stats["lastError"] = message
                stats.setdefault("failingSince", now)
            self.outbox.put_meta(key, stats)
            return was_failing

        was_failing = self.outbox.write(write)
        self.dirty.add((row.namespace, row.channel))
        if ok:
            if row.kind != "test":
                self.delivered[(row.namespace, row.channel)] += 1
            if was_failing is not None:
                self._recovered(row.namespace, row.channel, now - was_failing)
        elif attempted:
            self.failed_attempts[(row.namespace, row.channel)] += 1
            if was_failing is None:
                self._started_failing(row.namespace, row.channel, now, message)
        return was_failing

    def _recovered(self, ns: str, ch: str, failed_for: float) -> None:
        self.failing.pop((ns, ch), None)
        took = format_duration(round(max(0.0, failed_for)))
        LOG.warning("delivery to %s/%s works again after %s of failures", ns, ch, took)
        self.spawn(
            self.status.event(
                ns, "NotificationChannel", ch, "DeliveryRecovered", f"delivering again after {took} of failures", False
            )
        )

    def _started_failing(self, ns: str, ch: str, now: float, message: str) -> None:
        self.failing[(ns, ch)] = now
        spec = self.registry.channels.get((ns, ch))
        horizon = spec.retry.max_age if spec is not None else "24h"
        LOG.error("deliveries to %s/%s are failing: %s", ns, ch, message)
        self.spawn(
            self.status.event(
                ns,
                "NotificationChannel",
                ch,
                "DeliveryFailing",
                f"deliveries are failing ({message}); notifications wait and are retried for up to "
                f"{horizon} (retry.maxAge)",
                True,
            )
        )

    def gave_up(self, row: Row, attempts: int, message: str, reason: GiveUp) -> None:
        """A give-up is never silent: counted (metric), logged, reported by an Event and in status."""
        ns, ch = row.namespace, row.channel
        self.given_up[(ns, ch, reason)] += 1
        self.dirty.add((ns, ch))
        LOG.error(
            "gave up %s for %s to %s/%s after %d attempt(s) (%s): %s",
            row.kind,
            row.notification["rule_name"],
            ns,
            ch,
            attempts,
            reason,
            message,
        )
        count, _ = self._gave_up_unreported.get((ns, ch), (0, ""))
        self._gave_up_unreported[(ns, ch)] = (count + 1, f"{row.kind} for {row.notification['rule_name']}: {message}")

    # -- status --------------------------------------------------------------------------------
    def channel_status(self, ns: str, name: str, ready: Condition | None) -> NotificationChannelStatus:
        """The channel's status; a Ready channel whose deliveries fail is not Ready (DeliveryFailing)."""
        stats = self.outbox.get_meta(stats_key(ns, name)) or {}
        pending, oldest = self.outbox.pending_of(ns, name)
        failing = stats.get("failingSince")
        queue = DeliveryQueue(
            pending=pending,
            oldest_pending_time=datetime.fromtimestamp(oldest, UTC) if oldest is not None else None,
            failing_since=datetime.fromtimestamp(failing, UTC) if failing is not None else None,
            last_error=str(stats.get("lastError", ""))[:1024],
        )
        why = delivery_failing(
            {"queue": queue.model_dump(by_alias=True, mode="json", exclude_none=True)}, datetime.now(UTC)
        )
        if ready is not None and ready.status == "True" and why is not None:
            ready = Condition(type="Ready", status="False", reason="DeliveryFailing", message=why,
                              last_transition_time=queue.failing_since)
        return NotificationChannelStatus(
            conditions=[ready] if ready else [],
            last_delivery=Delivery.model_validate(stats["last"]) if "last" in stats else None,
            last_test_delivery=Delivery.model_validate(stats["lastTest"]) if "lastTest" in stats else None,
            delivered_count=stats.get("delivered", 0),
            failed_count=stats.get("failed", 0),
            queue=queue,
        )

    async def flush(self, ready: Mapping[Key, Condition]) -> None:
        """Write the status of every changed channel (a failed write is retried) and report give-ups."""
        dirty, self.dirty = self.dirty, set()
        for ns, name in sorted(dirty):
            try:
                await self.status.channel_status(ns, name, self.channel_status(ns, name, ready.get((ns, name))))
            except Exception:
                LOG.exception("status write for %s/%s failed", ns, name)
                self.dirty.add((ns, name))
        gave_up, self._gave_up_unreported = self._gave_up_unreported, {}
        for (ns, name), (count, last) in sorted(gave_up.items()):
            try:
                await self.status.event(
                    ns, "NotificationChannel", name, "DeliveryFailed",
                    f"gave up {count} notification(s); the last: {last}", True,
                )
            except Exception:
                LOG.exception("reporting give-ups for %s/%s failed", ns, name)

    async def run(self, ready: Mapping[Key, Condition], interval_s: float) -> None:
        """Coalesced status writes: at most one per channel per interval, whatever the traffic."""
        while True:
            await asyncio.sleep(interval_s)
            await self.flush(ready)
