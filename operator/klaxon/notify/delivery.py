"""Delivery: outbox rows to receivers, at least once, each under a stable ``Idempotency-Key``.

``Delivery.enqueue`` writes one row per channel (inside the caller's outbox transaction; an older
repeat of the same alert on the channel is superseded, a channel over its queue limit loses its
oldest rows). The worker (``run``) starts every due row there is a slot for — one per alert and
channel at a time, at most the channel's ``rateLimit.maxInFlight`` and ``concurrency * 2`` in all
— under the channel's rate limit, and retries with capped exponential backoff and jitter until
the row is delivered, superseded or older than the channel's ``retry.maxAge``. Outcomes go to
``ChannelStats``; finished rows are pruned after ``retention_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from ..api.alertrule_status import Notified
from ..api.channel import Retry
from ..api.common import parse_duration
from .drivers import DeliveryError, HttpRequest, prepare, send_email, send_http
from .model import Notification, SecretError
from .outbox import Outbox, Row
from .policy import Kind
from .readiness import SecretFn
from .redact import LOG, Redactor
from .registry import Key, Registry
from .ssrf import GuardedResolver
from .stats import ChannelStats, GiveUp, Spawn


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter, for as long as the notification is younger than
    ``max_age_s`` (a channel's ``spec.retry``); ``timeout_s`` bounds each attempt."""

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    jitter: float = 0.5  # the delay is drawn from [d·(1-jitter), d]
    max_age_s: float = 24 * 3600.0
    timeout_s: float = 10.0

    @classmethod
    def of(cls, retry: Retry) -> RetryPolicy:
        return cls(
            base_s=parse_duration(retry.initial_backoff),
            cap_s=parse_duration(retry.max_backoff),
            max_age_s=parse_duration(retry.max_age),
            timeout_s=parse_duration(retry.attempt_timeout),
        )

    def delay(self, attempt: int) -> float:
        d = min(self.cap_s, self.base_s * self.factor ** max(0, attempt - 1))
        return d * (1 - self.jitter * random.random())


class RateLimiter:
    """At most ``limit`` sends in any ``window_s`` (a sliding log: exact, and waits, never drops)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self.sent: deque[float] = deque()
        self.lock = asyncio.Lock()

    async def acquire(self, limit: int) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                while self.sent and now - self.sent[0] >= self.window_s:
                    self.sent.popleft()
                if len(self.sent) < limit:
                    self.sent.append(now)
                    return
                await asyncio.sleep(self.sent[0] + self.window_s - now)


def idempotency_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class DeliveryOptions:
    """How the worker paces itself (the ``Notifier``'s keyword arguments of the same names)."""

    concurrency: int = 16
    tick_interval_s: float = 30.0
    rate_window_s: float = 60.0
    retention_s: float = 7 * 86400.0
    prune_interval_s: float = 3600.0
    unknown_channel_max_age_s: float = 24 * 3600.0
    max_pending_per_channel: int = 10000
    restore_interval_s: float = 30.0


class Delivery:
    """The outbox's writer (``enqueue``) and its worker (``run``); see the module docstring.

    ``tick`` is run every ``tick_interval_s`` (the notifier's re-check of still-firing instances).
    """

    def __init__(
        self,
        outbox: Outbox,
        registry: Registry,
        stats: ChannelStats,
        *,
        secret: SecretFn,
        redactor: Redactor,
        spawn: Spawn,
        tick: Callable[[], Awaitable[int]],
        ssl_context: ssl.SSLContext,
        options: DeliveryOptions,
    ) -> None:
        self.outbox, self.registry, self.stats = outbox, registry, stats
        self.secret, self.redactor, self.spawn, self.tick = secret, redactor, spawn, tick
        self.ssl_context, self.options = ssl_context, options
        self._limiters: dict[Key, RateLimiter] = {}
        self.inflight: set[int] = set()
        self._inflight_keys: dict[int, str] = {}
        self._inflight_channels: dict[int, Key] = {}
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(options.concurrency)
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        #: rows put back because their channel was not known yet (e.g. right after a restart)
        self._awaiting_channel: dict[Key, set[int]] = {}

    def open(self) -> None:
        """HTTP sessions: one that refuses private addresses at connect time, one that allows them."""
        for allow in (False, True):
            connector = aiohttp.TCPConnector(
                limit=self.options.concurrency * 2,
                ssl=self.ssl_context,
                resolver=None if allow else GuardedResolver(),
            )
            self._sessions[allow] = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        for s in self._sessions.values():
            await s.close()

    def wake(self) -> None:
        self._wake.set()

    # -- writing rows (inside the caller's outbox transaction) ----------------------------------
    def enqueue(
        self, n: Notification, kind: Kind, at: datetime, channels: tuple[str, ...], allow: bool, dropped: list[Row]
    ) -> int:
        """One row per channel of ``n`` (else ``channels``); older repeats of the same alert on the
        channel are superseded, and a channel over its queue limit loses its oldest rows (to
        ``dropped``, for ``report_dropped`` after the transaction)."""
        added = 0
        now = time.time()
        limit = self.options.max_pending_per_channel
        for ch in n.channels or channels:
            spec = self.registry.channels.get((n.rule_namespace, ch))
            if kind == "resolved" and spec is not None and not spec.send_resolved:
                continue
            idem = idempotency_key(
                n.rule_namespace, n.rule_name, n.dedup_key, n.episode_id, kind, n.level or "", at.isoformat(), ch
            )
            row_id = self.outbox.enqueue(idem, n.rule_namespace, ch, kind, n.to_json(), allow, now)
            if row_id is None:
                continue
            added += 1
            self.outbox.supersede(row_id, self.inflight, now)
            for row in self.outbox.overflow(n.rule_namespace, ch, limit, self.inflight):
                text = f"more than {limit} notifications wait for this channel"
                self.stats.finish_final(row, False, row.attempts, text, now, gave_up=True)
                dropped.append(row)
        return added

    def report_dropped(self, rows: list[Row]) -> None:
        for row in rows:
            text = f"more than {self.options.max_pending_per_channel} notifications wait for this channel"
            self.stats.gave_up(row, row.attempts, text, "queueFull")

    def request_test(self, ns: str, name: str, token: str, at: datetime, allow: bool) -> None:
        """Queue one test delivery per token (``klaxon.dev/test-delivery``), never twice for a token."""
        meta = f"test:{ns}/{name}"

        def request() -> None:
            if self.outbox.get_meta(meta) == token:
                return
            n = Notification(
                rule_namespace=ns,
                rule_name=f"test-{name}",
                dedup_key=f"test:{token}",
                episode_id=token,
                state_from="Inactive",
                state_to="Firing",
                time=at,
                severity="info",
                annotations={"summary": f"Klaxon test delivery to {name}"},
            )
            idem = idempotency_key("test", ns, name, token)
            self.outbox.enqueue(idem, ns, name, "test", n.to_json(), allow, time.time())
            self.outbox.put_meta(meta, token)

        self.outbox.write(request)

    def channel_known(self, ns: str, name: str) -> None:
        """Rows that waited for this channel to be known are due now."""
        waiting = self._awaiting_channel.pop((ns, name), set())
        if waiting:
            self.outbox.write(lambda: self.outbox.due_now(waiting, time.time()))
        self._wake.set()

    # -- the worker ------------------------------------------------------------------------------
    def _take(self) -> int:
        """Start every due row there is a slot for: one per alert and channel at a time, at most the
        channel's ``rateLimit.maxInFlight`` (a crash re-sends what is in flight) and ``concurrency * 2``
        in all."""
        started = 0
        while True:
            free = self.options.concurrency * 2 - len(self.inflight)
            if free <= 0:
                return started
            per: Counter[Key] = Counter(self._inflight_channels.values())
            full = {ch for ch, n in per.items() if n >= self.registry.in_flight_limit(ch)}
            busy = set(self._inflight_keys.values())
            taken = 0
            for row in self.outbox.due(time.time(), free, self.inflight, busy, full):
                ch = (row.namespace, row.channel)
                if per[ch] >= self.registry.in_flight_limit(ch):
                    continue
                per[ch] += 1
                self.inflight.add(row.id)
                self._inflight_keys[row.id] = row.okey
                self._inflight_channels[row.id] = ch
                self.spawn(self._deliver(row))
                taken += 1
            if not taken:
                return started
            started += taken

    async def run(self) -> None:
        opts = self.options
        last_tick, last_prune = time.monotonic(), float("-inf")  # prune at start, then every interval
        last_restore = time.monotonic()
        while True:
            if time.monotonic() - last_prune >= opts.prune_interval_s:
                last_prune = time.monotonic()
                self._prune()
            if self.outbox.problem is not None and time.monotonic() - last_restore >= opts.restore_interval_s:
                last_restore = time.monotonic()
                self.outbox.restore()
            self._wake.clear()
            self._take()
            if time.monotonic() - last_tick >= opts.tick_interval_s:
                last_tick = time.monotonic()
                try:
                    await self.tick()
                except Exception:
                    LOG.exception("tick failed")
            await self._sleep()

    def _prune(self) -> None:
        retention = self.options.retention_s
        try:
            pruned = self.outbox.write(lambda: self.outbox.prune(time.time() - retention))
        except Exception:
            LOG.exception("pruning the outbox failed")
            pruned = 0
        if pruned:
            LOG.info("pruned %d finished outbox rows older than %.0f s", pruned, retention)

    async def _sleep(self) -> None:
        """Until the next row is due, a tick is due or something wakes the worker (a new row, a
        delivery ending: rows due now but not started wait for a slot)."""
        opts = self.options
        now = time.time()
        nxt = self.outbox.next_due(after=now)
        wait = opts.tick_interval_s if nxt is None else min(opts.tick_interval_s, nxt - now)
        if self.outbox.problem is not None:
            wait = min(wait, opts.restore_interval_s)
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races the event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(wait, 0.001)):
                await self._wake.wait()

    async def _deliver(self, row: Row) -> None:
        try:
            async with self._sem:
                await self._attempt(row)
        except Exception:
            LOG.exception("delivery of row %s crashed", row.id)
            retry_at = time.time() + RetryPolicy().delay(row.attempts + 1)
            try:
                self.outbox.write(
                    lambda: self.outbox.finish(
                        row.id, "pending", row.attempts + 1, "internal error", time.time(), retry_at
                    )
                )
            except Exception:
                LOG.exception("recording the crash of row %s failed", row.id)
        finally:
            self.inflight.discard(row.id)
            self._inflight_keys.pop(row.id, None)
            self._inflight_channels.pop(row.id, None)
            self._wake.set()

    async def _attempt(self, row: Row) -> None:
        ns, ch = row.namespace, row.channel
        spec = self.registry.channels.get((ns, ch))
        now = time.time()
        if spec is None:  # not (yet) known, e.g. right after a restart: wait without spending attempts
            text = f"NotificationChannel {ch} not found"
            if now - row.created > self.options.unknown_channel_max_age_s:
                self._record(row, False, row.attempts, text, gave_up="channelNotFound")
            else:
                self.outbox.write(lambda: self.outbox.finish(row.id, "pending", row.attempts, text, now, now + 5.0))
                self._awaiting_channel.setdefault((ns, ch), set()).add(row.id)
            return
        policy = RetryPolicy.of(spec.retry)
        if now - row.created > policy.max_age_s:
            last = f" (last error: {row.message})" if row.message else ""
            self._record(
                row, False, row.attempts, f"not delivered within retry.maxAge {spec.retry.max_age}{last}",
                gave_up="maxAge",
            )
            return
        limiter = self._limiters.setdefault((ns, ch), RateLimiter(self.options.rate_window_s))
        await limiter.acquire(spec.rate_limit.per_minute)
        n = Notification.from_json(row.notification)
        kind: Kind = row.kind  # type: ignore[assignment]
        attempts = row.attempts + 1
        try:
            job = await prepare(spec, lambda ref: self.secret(ns, ref), n, kind, row.idem)
            if isinstance(job, HttpRequest):
                message = await send_http(
                    self._sessions[row.allow_private], job, policy.timeout_s, guard=not row.allow_private
                )
            else:
                message = await send_email(job, policy.timeout_s, self.ssl_context, guard=not row.allow_private)
        except DeliveryError as exc:
            if not exc.retryable:
                self._record(row, False, attempts, str(exc), gave_up="notRetryable")
            else:
                self._record(row, False, attempts, str(exc), retry_at=self._retry_at(row, policy, attempts))
            return
        except SecretError as exc:  # the Secret may yet be created: wait for it like for a receiver
            self._record(row, False, attempts, str(exc), retry_at=self._retry_at(row, policy, attempts))
            return
        self._record(row, True, attempts, message)

    @staticmethod
    def _retry_at(row: Row, policy: RetryPolicy, attempts: int) -> float:
        # never later than the horizon: the last attempt comes at maxAge, then the row is given up
        return min(time.time() + policy.delay(attempts), row.created + policy.max_age_s + 0.001)

    def _record(
        self,
        row: Row,
        ok: bool,
        attempts: int,
        message: str,
        *,
        retry_at: float | None = None,
        gave_up: GiveUp | None = None,
    ) -> None:
        """Write the outcome of an attempt, then log and report it.

        Delivered: the row is done and the channel, if it was failing, is delivering again. A failed
        attempt either waits for ``retry_at`` or, with ``gave_up``, ends the row for good.
        """
        message = self.redactor.scrub(message)[:1000]
        now = time.time()
        ns, ch = row.namespace, row.channel
        was_failing = self.stats.record(row, ok, attempts, message, now, retry_at, gave_up is not None)
        if retry_at is not None:  # the outage was announced once; each retry of it is detail
            LOG.log(
                logging.DEBUG if was_failing is not None else logging.WARNING,
                "delivery to %s/%s failed (attempt %d), retry in %.1fs: %s",
                ns, ch, attempts, retry_at - now, message,
            )
            return
        if ok:
            LOG.info(
                "delivered %s for %s to %s/%s: %s", row.kind, row.notification["rule_name"], ns, ch, message
            )
        elif gave_up is not None:
            self.stats.gave_up(row, attempts, message, gave_up)
        self._report(row, ok, message)

    def _report(self, row: Row, ok: bool, message: str) -> None:
        """A test delivery's outcome as an Event on the channel; any other on its AlertRule."""
        ns, ch = row.namespace, row.channel
        if row.kind == "test":
            self.spawn(
                self.stats.status.event(
                    ns, "NotificationChannel", ch, "TestDelivery", ("delivered: " if ok else "failed: ") + message,
                    not ok,
                )
            )
            return
        self.spawn(
            self.stats.status.rule_notified(
                ns,
                row.notification["rule_name"],
                Notified(
                    time=datetime.now(UTC),
                    channel=ch,
                    outcome="Delivered" if ok else "Failed",
                    reason=f"{row.kind}: {message}"[:256],
                ),
            )
        )
