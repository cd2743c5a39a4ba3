"""The ``Notifier``: policy → durable outbox → drivers, with retries, rate limits and status.

The evaluator calls ``await notifier.handle(Notification(...))`` for each transition; the
operator keeps the notifier's view of AlertRules, AlertConfigs and NotificationChannels current
with ``set_rule`` / ``set_config`` / ``set_channel``. See ``klaxon.notify`` for the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic.alias_generators import to_camel

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec, Notified
from ..api.channel import (
    Delivery,
    DeliveryQueue,
    NotificationChannelSpec,
    NotificationChannelStatus,
    Retry,
    delivery_failing,
)
from ..api.common import Condition, SecretKeySelector, format_duration, parse_duration
from ..api.constants import DEFAULT_CONFIG
from ..api.refs import config_key
from .drivers import DeliveryError, HttpRequest, prepare, send_email, send_http
from .model import Notification, SecretError, SecretResolver, StatusSink
from .outbox import Outbox, Row
from .policy import Decision, KeyState, Kind, RulePolicy, decide, parse_ack, tick
from .redact import LOG, Redactor, install
from .ssrf import BlockedAddress, GuardedResolver, check_host
from .templates import template_problem

ACK_ANNOTATION = "klaxon.dev/ack"
TEST_ANNOTATION = "klaxon.dev/test-delivery"


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


#: Why a notification was given up (the ``reason`` label of the given-up metric).
GiveUp = Literal["maxAge", "notRetryable", "queueFull", "channelNotFound"]


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


def _key(ns: str, rule: str, dedup: str) -> str:
    return json.dumps([ns, rule, dedup])


class Notifier:
    """Delivers each notification at least once, with a stable ``Idempotency-Key``, across restarts
    and receiver outages (see ``outbox``); gives up only past the channel's ``retry.maxAge``."""

    def __init__(
        self,
        outbox_path: str | Path,
        secrets: SecretResolver,
        status: StatusSink,
        *,
        concurrency: int = 16,
        ssl_context: ssl.SSLContext | None = None,
        status_interval_s: float = 2.0,
        tick_interval_s: float = 30.0,
        rate_window_s: float = 60.0,
        durable: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retention_s: float = 7 * 86400.0,
        prune_interval_s: float = 3600.0,
        unknown_channel_max_age_s: float = 24 * 3600.0,
        max_pending_per_channel: int = 10000,
        restore_interval_s: float = 30.0,
    ) -> None:
        self.outbox = Outbox(outbox_path, durable=durable)
        self.secrets, self.status = secrets, status
        #: sends in flight at once in all (per channel: its rateLimit.maxInFlight)
        self.concurrency = concurrency
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.status_interval_s, self.tick_interval_s, self.rate_window_s = (
            status_interval_s,
            tick_interval_s,
            rate_window_s,
        )
        self.clock = clock
        #: finished outbox rows (delivered, failed) are kept this long, then pruned hourly
        self.retention_s, self.prune_interval_s = retention_s, prune_interval_s
        #: a row for a channel the notifier does not know (yet) waits this long
        self.unknown_channel_max_age_s = unknown_channel_max_age_s
        #: per channel at most this many rows wait; beyond it the oldest are given up
        self.max_pending_per_channel = max_pending_per_channel
        self.restore_interval_s = restore_interval_s
        self.redactor = Redactor()
        install(self.redactor)
        self.rules: dict[tuple[str, str], tuple[AlertRuleSpec, str | None]] = {}
        self.configs: dict[tuple[str, str], AlertConfigSpec] = {}
        self.channels: dict[tuple[str, str], NotificationChannelSpec] = {}
        self._ready: dict[tuple[str, str], Condition] = {}
        self._limiters: dict[tuple[str, str], RateLimiter] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._inflight: set[int] = set()
        self._inflight_keys: dict[int, str] = {}
        self._inflight_channels: dict[int, tuple[str, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(concurrency)
        self._loops: list[asyncio.Task[None]] = []
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._stopped = False
        #: counters for metrics (this process): given up by reason, delivered, failed attempts
        self.given_up: Counter[tuple[str, str, str]] = Counter()
        self.delivered: Counter[tuple[str, str]] = Counter()
        self.failed_attempts: Counter[tuple[str, str]] = Counter()
        #: channels whose deliveries fail, since when (mirrors the durable channel stats)
        self.failing: dict[tuple[str, str], float] = {}
        #: give-ups not yet reported by an Event: channel -> (count, last text)
        self._gave_up_unreported: dict[tuple[str, str], tuple[int, str]] = {}
        #: rows put back because their channel was not known yet (e.g. right after a restart)
        self._awaiting_channel: dict[tuple[str, str], set[int]] = {}

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start delivering; rows left pending by a previous process are picked up first."""
        for allow in (False, True):
            connector = aiohttp.TCPConnector(
                limit=self.concurrency * 2,
                ssl=self.ssl_context,
                resolver=None if allow else GuardedResolver(),
            )
            self._sessions[allow] = aiohttp.ClientSession(connector=connector)
        self._loops = [
            asyncio.create_task(self._run(), name="klaxon-notify-deliver"),
            asyncio.create_task(self._status_loop(), name="klaxon-notify-status"),
        ]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop taking rows, let in-flight deliveries finish and record their outcome, flush status."""
        if self._stopped:
            return
        self._stopped = True
        for t in self._loops:
            t.cancel()
        if self._loops:
            await asyncio.wait(self._loops, timeout=grace_s)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_s)
        await self._flush_status()
        for s in self._sessions.values():
            await s.close()
        self.outbox.restore()
        self.outbox.close()

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Until nothing is pending or in flight (tests, benchmarks, graceful drain)."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.counts().get("pending", 0) or self._inflight:
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox not drained: {self.outbox.counts()}")
            await asyncio.sleep(0.01)

    @property
    def storage_problem(self) -> str | None:
        """Why the outbox is held in memory only (its file cannot be written); None while on disk."""
        return self.outbox.problem

    # -- the world as the operator sees it --------------------------------------------------
    async def set_config(self, namespace: str, name: str, spec: AlertConfigSpec) -> None:
        self.configs[(namespace, name)] = spec

    async def set_rule(
        self, namespace: str, name: str, spec: AlertRuleSpec, annotations: Mapping[str, str] | None = None
    ) -> None:
        """Record a rule (mute, notify policy, ack annotation); an unmute notifies at once."""
        self.rules[(namespace, name)] = (spec, (annotations or {}).get(ACK_ANNOTATION))
        await self.tick(only=(namespace, name))

    async def remove_rule(self, namespace: str, name: str) -> None:
        self.rules.pop((namespace, name), None)

    def episode(self, namespace: str, rule: str, dedup_key: str) -> str | None:
        """The episode id of the instance if it is firing as far as the notifier knows, else None.

        The evaluator uses it to continue an episode (escalation, Recovering → Firing) after a
        restart, when its own memory of the episode is gone but the outbox still holds it.
        """
        raw = self.outbox.get_key(_key(namespace, rule, dedup_key))
        if not raw:
            return None
        st = KeyState.from_json(raw)
        return st.episode_id if st.firing else None

    def firing_since(self, namespace: str, rule: str, dedup_key: str) -> tuple[str, datetime] | None:
        """(episode id, when it started firing) of an instance the notifier holds as firing, else None."""
        raw = self.outbox.get_key(_key(namespace, rule, dedup_key))
        if not raw:
            return None
        st = KeyState.from_json(raw)
        if not st.firing or st.episode_id is None or st.since is None:
            return None
        return st.episode_id, st.since

    def held_firing(self, namespace: str, rule: str) -> list[tuple[str, Notification]]:
        """(episode id, last notification) of every instance of a rule the notifier holds as firing."""
        out = []
        for _, ns, name, raw in self.outbox.firing_keys():
            if (ns, name) == (namespace, rule):
                st = KeyState.from_json(raw)
                if st.last is not None and st.episode_id is not None:
                    out.append((st.episode_id, Notification.from_json(st.last)))
        return out

    def forget_rule(self, namespace: str, name: str) -> int:
        """Stop tracking a rule's firing instances without notifying (the rule is gone or moved to
        another evaluator): no repeat or unmute notification goes out for them any more."""

        def forget() -> int:
            n = 0
            for k, ns, rule, raw in self.outbox.firing_keys():
                if (ns, rule) == (namespace, name):
                    st = KeyState.from_json(raw)
                    st.firing = False
                    self.outbox.put_key(k, ns, rule, False, st.to_json())
                    n += 1
            return n

        n = self.outbox.write(forget)
        self.rules.pop((namespace, name), None)
        return n

    async def set_channel(
        self,
        namespace: str,
        name: str,
        spec: NotificationChannelSpec,
        annotations: Mapping[str, str] | None = None,
    ) -> Condition:
        """Record a channel, compute its Ready condition and honour a test-delivery annotation."""
        self.channels[(namespace, name)] = spec
        stats = self.outbox.get_meta(_stats_key(namespace, name)) or {}
        if stats.get("failingSince") is not None:
            self.failing[(namespace, name)] = float(stats["failingSince"])
        ready = await self._check_channel(namespace, name, spec)
        old = self._ready.get((namespace, name))
        if old is None or (old.status, old.reason, old.message) != (
            ready.status,
            ready.reason,
            ready.message,
        ):
            self._ready[(namespace, name)] = ready
        self._dirty.add((namespace, name))
        token = (annotations or {}).get(TEST_ANNOTATION)
        if token:
            self._request_test(namespace, name, token)
        waiting = self._awaiting_channel.pop((namespace, name), set())
        if waiting:  # they waited for this channel to be known: due now
            self.outbox.write(lambda: self.outbox.due_now(waiting, time.time()))
        self._wake.set()
        return self._ready[(namespace, name)]

    async def remove_channel(self, namespace: str, name: str) -> None:
        self.channels.pop((namespace, name), None)
        self.failing.pop((namespace, name), None)

    def _config_for(self, namespace: str, rule: AlertRuleSpec | None) -> AlertConfigSpec | None:
        return self.configs.get(config_key(namespace, rule))

    def _policy(self, namespace: str, rule_name: str) -> tuple[RulePolicy, bool]:
        spec, ack = self.rules.get((namespace, rule_name), (None, None))
        config = self._config_for(namespace, spec)
        ids, before = parse_ack(ack)
        allow = bool(config and config.allow_private_channel_addresses)
        return RulePolicy.from_specs(spec, config, ids, before), allow

    # -- the entry point ---------------------------------------------------------------------
    async def handle(self, n: Notification) -> Decision:
        """Decide on one transition and, if it notifies, enqueue it durably for every channel."""
        policy, allow = self._policy(n.rule_namespace, n.rule_name)
        k = _key(n.rule_namespace, n.rule_name, n.dedup_key)
        dropped: list[Row] = []

        def decide_and_enqueue() -> Decision:
            dropped.clear()
            raw = self.outbox.get_key(k)
            decision, st = decide(KeyState.from_json(raw) if raw else KeyState(), n, policy)
            self.outbox.put_key(k, n.rule_namespace, n.rule_name, st.firing, st.to_json())
            if decision.notify:
                self._enqueue(n, decision.kind, n.time, policy, allow, dropped)
            return decision

        decision = self.outbox.write(decide_and_enqueue)
        self._report_dropped(dropped)
        self._after_decision(n, decision)
        return decision

    async def tick(self, now: datetime | None = None, only: tuple[str, str] | None = None) -> int:
        """Re-check still-firing instances (repeatInterval, unmute, schedule opening); rows enqueued."""
        now = now or self.clock()
        enqueued = 0
        dropped: list[Row] = []
        for k, ns, rule, raw in self.outbox.firing_keys():
            if only is not None and (ns, rule) != only:
                continue
            policy, allow = self._policy(ns, rule)

            enqueued += self.outbox.write(partial(self._recheck, k, ns, rule, raw, policy, allow, now, dropped))
        self._report_dropped(dropped)
        if enqueued:
            self._wake.set()
        return enqueued

    def _recheck(
        self,
        k: str,
        ns: str,
        rule: str,
        raw: dict[str, Any],
        policy: RulePolicy,
        allow: bool,
        now: datetime,
        dropped: list[Row],
    ) -> int:
        fresh = self.outbox.get_key(k)
        out = tick(KeyState.from_json(fresh or raw), policy, now)
        if out is None or not out[0].notify:
            return 0
        decision, st = out
        self.outbox.put_key(k, ns, rule, st.firing, st.to_json())
        assert st.last is not None
        return self._enqueue(Notification.from_json(st.last), decision.kind, now, policy, allow, dropped)

    def _enqueue(
        self, n: Notification, kind: Kind, at: datetime, policy: RulePolicy, allow: bool, dropped: list[Row]
    ) -> int:
        """One row per channel (inside the caller's transaction); older repeats of the same alert on
        the channel are superseded, and a channel over its queue limit loses its oldest rows."""
        added = 0
        now = time.time()
        for ch in n.channels or policy.channels:
            spec = self.channels.get((n.rule_namespace, ch))
            if kind == "resolved" and spec is not None and not spec.send_resolved:
                continue
            idem = idempotency_key(
                n.rule_namespace,
                n.rule_name,
                n.dedup_key,
                n.episode_id,
                kind,
                n.level or "",
                at.isoformat(),
                ch,
            )
            row_id = self.outbox.enqueue(idem, n.rule_namespace, ch, kind, n.to_json(), allow, now)
            if row_id is None:
                continue
            added += 1
            self.outbox.supersede(row_id, self._inflight, now)
            over = self.outbox.overflow(n.rule_namespace, ch, self.max_pending_per_channel, self._inflight)
            for row in over:
                text = f"more than {self.max_pending_per_channel} notifications wait for this channel"
                self._finish_final(row, False, row.attempts, text, now, gave_up=True)
                dropped.append(row)
        return added

    def _report_dropped(self, rows: list[Row]) -> None:
        for row in rows:
            text = f"more than {self.max_pending_per_channel} notifications wait for this channel"
            self._after_give_up(row, row.attempts, text, "queueFull")

    def _after_decision(self, n: Notification, d: Decision) -> None:
        if d.notify:
            self._wake.set()
        elif d.suppressed_by is not None and d.kind == "firing":
            LOG.info(
                "notification for %s/%s key %s suppressed by %s: %s",
                n.rule_namespace,
                n.rule_name,
                n.dedup_key,
                d.suppressed_by,
                d.reason,
            )
            self._spawn(
                self.status.rule_notified(
                    n.rule_namespace,
                    n.rule_name,
                    Notified(
                        time=n.time, outcome="Suppressed", reason=f"{d.suppressed_by}: {d.reason}"[:256]
                    ),
                )
            )

    def _request_test(self, ns: str, name: str, token: str) -> None:
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
                time=self.clock(),
                severity="info",
                annotations={"summary": f"Klaxon test delivery to {name}"},
            )
            idem = idempotency_key("test", ns, name, token)
            allow = bool((cfg := self.configs.get((ns, DEFAULT_CONFIG))) and cfg.allow_private_channel_addresses)
            self.outbox.enqueue(idem, ns, name, "test", n.to_json(), allow, time.time())
            self.outbox.put_meta(meta, token)

        self.outbox.write(request)

    # -- delivery ----------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _in_flight_limit(self, channel: tuple[str, str]) -> int:
        spec = self.channels.get(channel)
        return spec.rate_limit.max_in_flight if spec is not None else 1

    def _take(self) -> int:
        """Start every due row there is a slot for: one per alert and channel at a time, at most the
        channel's ``rateLimit.maxInFlight`` (a crash re-sends what is in flight) and ``concurrency * 2``
        in all."""
        started = 0
        while True:
            free = self.concurrency * 2 - len(self._inflight)
            if free <= 0:
                return started
            per: Counter[tuple[str, str]] = Counter(self._inflight_channels.values())
            full = {ch for ch, n in per.items() if n >= self._in_flight_limit(ch)}
            busy = set(self._inflight_keys.values())
            taken = 0
            for row in self.outbox.due(time.time(), free, self._inflight, busy, full):
                ch = (row.namespace, row.channel)
                if per[ch] >= self._in_flight_limit(ch):
                    continue
                per[ch] += 1
                self._inflight.add(row.id)
                self._inflight_keys[row.id] = row.okey
                self._inflight_channels[row.id] = ch
                self._spawn(self._deliver(row))
                taken += 1
            if not taken:
                return started
            started += taken

    async def _run(self) -> None:
        last_tick, last_prune = time.monotonic(), float("-inf")  # prune at start, then every interval
        last_restore = time.monotonic()
        while True:
            if time.monotonic() - last_prune >= self.prune_interval_s:
                last_prune = time.monotonic()
                try:
                    pruned = self.outbox.write(lambda: self.outbox.prune(time.time() - self.retention_s))
                except Exception:
                    LOG.exception("pruning the outbox failed")
                    pruned = 0
                if pruned:
                    LOG.info("pruned %d finished outbox rows older than %.0f s", pruned, self.retention_s)
            if self.outbox.problem is not None and time.monotonic() - last_restore >= self.restore_interval_s:
                last_restore = time.monotonic()
                self.outbox.restore()
            self._wake.clear()
            self._take()
            if time.monotonic() - last_tick >= self.tick_interval_s:
                last_tick = time.monotonic()
                try:
                    await self.tick()
                except Exception:
                    LOG.exception("tick failed")
            # Rows due now but not started wait for a slot: the end of a delivery wakes this loop.
            now = time.time()
            nxt = self.outbox.next_due(after=now)
            wait = self.tick_interval_s if nxt is None else min(self.tick_interval_s, nxt - now)
            if self.outbox.problem is not None:
                wait = min(wait, self.restore_interval_s)
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races the event
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.001)):
                    await self._wake.wait()

    async def _secret(self, namespace: str, ref: SecretKeySelector) -> str:
        value = await self.secrets.get(namespace, ref.name, ref.key)
        self.redactor.add(value)
        return value

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
            self._inflight.discard(row.id)
            self._inflight_keys.pop(row.id, None)
            self._inflight_channels.pop(row.id, None)
            self._wake.set()

    async def _attempt(self, row: Row) -> None:
        ns, ch = row.namespace, row.channel
        spec = self.channels.get((ns, ch))
        now = time.time()
        if spec is None:  # not (yet) known, e.g. right after a restart: wait without spending attempts
            text = f"NotificationChannel {ch} not found"
            if now - row.created > self.unknown_channel_max_age_s:
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
        limiter = self._limiters.setdefault((ns, ch), RateLimiter(self.rate_window_s))
        await limiter.acquire(spec.rate_limit.per_minute)
        n = Notification.from_json(row.notification)
        kind: Kind = row.kind  # type: ignore[assignment]
        attempts = row.attempts + 1
        try:
            job = await prepare(spec, lambda ref: self._secret(ns, ref), n, kind, row.idem)
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

    def _finish_final(
        self, row: Row, ok: bool, attempts: int, message: str, now: float, gave_up: bool = False
    ) -> dict[str, Any]:
        """Mark a row delivered or given up and count it in the channel's stats (inside a transaction)."""
        test = row.kind == "test"
        self.outbox.finish(row.id, "delivered" if ok else "failed", attempts, message, now)
        key = _stats_key(row.namespace, row.channel)
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
        """Write the outcome of an attempt (row + channel stats in one transaction), then log and report.

        Delivered: the row is done and the channel, if it was failing, is delivering again. A failed
        attempt either waits for ``retry_at`` or, with ``gave_up``, ends the row for good.
        """
        message = self.redactor.scrub(message)[:1000]
        now = time.time()
        ns, ch, test = row.namespace, row.channel, row.kind == "test"
        key = _stats_key(ns, ch)
        attempted = attempts > row.attempts  # False: given up without trying (too old, channel unknown)

        def write() -> float | None:
            if retry_at is not None:
                self.outbox.finish(row.id, "pending", attempts, message, now, retry_at)
                stats = self.outbox.get_meta(key) or {"delivered": 0, "failed": 0}
            else:
                stats = self._finish_final(row, ok, attempts, message, now, gave_up=gave_up is not None)
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
        self._dirty.add((ns, ch))
        if ok:
            if not test:
                self.delivered[(ns, ch)] += 1
            if was_failing is not None:
                self.failing.pop((ns, ch), None)
                took = format_duration(round(max(0.0, now - was_failing)))
                LOG.warning("delivery to %s/%s works again after %s of failures", ns, ch, took)
                self._spawn(
                    self.status.event(
                        ns, "NotificationChannel", ch, "DeliveryRecovered", f"delivering again after {took}"
                        " of failures", False
                    )
                )
        elif attempted:
            self.failed_attempts[(ns, ch)] += 1
            if was_failing is None:
                self.failing[(ns, ch)] = now
                spec = self.channels.get((ns, ch))
                horizon = spec.retry.max_age if spec is not None else "24h"
                LOG.error("deliveries to %s/%s are failing: %s", ns, ch, message)
                self._spawn(
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
            self._after_give_up(row, attempts, message, gave_up)
        if test:
            self._spawn(
                self.status.event(
                    ns,
                    "NotificationChannel",
                    ch,
                    "TestDelivery",
                    ("delivered: " if ok else "failed: ") + message,
                    not ok,
                )
            )
        else:
            self._spawn(
                self.status.rule_notified(
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

    def _after_give_up(self, row: Row, attempts: int, message: str, reason: GiveUp) -> None:
        """A give-up is never silent: counted (metric), logged, reported by an Event and in status."""
        ns, ch = row.namespace, row.channel
        self.given_up[(ns, ch, reason)] += 1
        self._dirty.add((ns, ch))
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
    async def _check_channel(self, ns: str, name: str, spec: NotificationChannelSpec) -> Condition:
        """Ready: the typed block is there, every secret resolves, templates compile, address allowed."""

        def cond(ok: bool, reason: str, message: str) -> Condition:
            return Condition(
                type="Ready",
                status="True" if ok else "False",
                reason=reason,
                message=self.redactor.scrub(message),
                last_transition_time=datetime.now(UTC),
            )

        block = getattr(spec, spec.type, None)
        if block is None:
            return cond(False, "InvalidSpec", f"type {spec.type} needs the {spec.type} block")
        for field_name in ("title", "body"):
            problem = template_problem(getattr(spec.templates, field_name))
            if problem:
                return cond(False, "InvalidTemplate", f"templates.{field_name}: {problem}")
        refs = [v for v in _walk_refs(block)]
        for path, ref in refs:
            try:
                await self._secret(ns, ref)
            except SecretError:
                return cond(
                    False, "SecretNotFound", f"{spec.type}.{path}: Secret {ref.name} has no key {ref.key}"
                )
        url = getattr(block, "url", None)
        cfg = self.configs.get((ns, DEFAULT_CONFIG))
        if isinstance(url, str) and not (cfg and cfg.allow_private_channel_addresses):
            host = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
            host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            try:
                await check_host(host)
            except BlockedAddress as exc:
                return cond(False, "AddressNotAllowed", str(exc))
        return cond(True, "Resolved", "configuration valid and every secret resolved")

    def channel_status(self, ns: str, name: str) -> NotificationChannelStatus:
        stats = self.outbox.get_meta(_stats_key(ns, name)) or {}
        pending, oldest = self.outbox.pending_of(ns, name)
        failing = stats.get("failingSince")
        queue = DeliveryQueue(
            pending=pending,
            oldest_pending_time=datetime.fromtimestamp(oldest, UTC) if oldest is not None else None,
            failing_since=datetime.fromtimestamp(failing, UTC) if failing is not None else None,
            last_error=str(stats.get("lastError", ""))[:1024],
        )
        ready = self._ready.get((ns, name))
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

    async def _flush_status(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for ns, name in sorted(dirty):
            try:
                await self.status.channel_status(ns, name, self.channel_status(ns, name))
            except Exception:
                LOG.exception("status write for %s/%s failed", ns, name)
                self._dirty.add((ns, name))
        gave_up, self._gave_up_unreported = self._gave_up_unreported, {}
        for (ns, name), (count, last) in sorted(gave_up.items()):
            try:
                await self.status.event(
                    ns, "NotificationChannel", name, "DeliveryFailed",
                    f"gave up {count} notification(s); the last: {last}", True,
                )
            except Exception:
                LOG.exception("reporting give-ups for %s/%s failed", ns, name)

    async def _status_loop(self) -> None:
        """Coalesced status writes: at most one per channel per interval, whatever the traffic."""
        while True:
            await asyncio.sleep(self.status_interval_s)
            await self._flush_status()


def _stats_key(ns: str, name: str) -> str:
    return f"stats:{ns}/{name}"


def _walk_refs(block: Any, prefix: str = "") -> list[tuple[str, SecretKeySelector]]:
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
