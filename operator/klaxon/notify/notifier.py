"""The ``Notifier``: policy → durable outbox → drivers, with retries, rate limits and status.

The evaluator calls ``await notifier.handle(Notification(...))`` for each transition; the
operator keeps the notifier's view of AlertRules, AlertConfigs and NotificationChannels current
with ``set_rule`` / ``set_config`` / ``set_channel``. See ``klaxon.notify`` for the contract.

A façade: the specs are the ``registry``'s, channel readiness the ``readiness``'s, rows and their
delivery the ``delivery``'s, counters and status the ``stats``'. What it keeps is the decision:
the pure policy applied to each transition, and to still-firing instances on every tick, in one
outbox transaction with the rows it enqueues.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec
from ..api.alertrule_status import Notified
from ..api.channel import NotificationChannelSpec, NotificationChannelStatus
from ..api.common import Condition, SecretKeySelector
from .delivery import Delivery, DeliveryOptions
from .model import Notification, SecretResolver, StatusSink
from .outbox import Outbox, Row
from .policy import Decision, KeyState, RulePolicy, decide, tick
from .readiness import Readiness
from .redact import LOG, Redactor, install
from .registry import Key, Registry
from .stats import ChannelStats

TEST_ANNOTATION = "klaxon.dev/test-delivery"


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
        """``concurrency``: sends in flight at once in all (per channel: its rateLimit.maxInFlight);
        finished outbox rows are kept ``retention_s``, pruned every ``prune_interval_s``; a row for a
        channel not known (yet) waits ``unknown_channel_max_age_s``; per channel at most
        ``max_pending_per_channel`` rows wait (beyond it the oldest are given up)."""
        self.outbox = Outbox(outbox_path, durable=durable)
        self.secrets, self.status, self.clock = secrets, status, clock
        self.status_interval_s = status_interval_s
        self.redactor = Redactor()
        install(self.redactor)
        self.registry = Registry()
        self.readiness = Readiness(self._secret, self.redactor)
        self.stats = ChannelStats(self.outbox, self.registry, status, self._spawn)
        options = DeliveryOptions(
            concurrency=concurrency,
            tick_interval_s=tick_interval_s,
            rate_window_s=rate_window_s,
            retention_s=retention_s,
            prune_interval_s=prune_interval_s,
            unknown_channel_max_age_s=unknown_channel_max_age_s,
            max_pending_per_channel=max_pending_per_channel,
            restore_interval_s=restore_interval_s,
        )
        self.delivery = Delivery(
            self.outbox, self.registry, self.stats, secret=self._secret, redactor=self.redactor,
            spawn=self._spawn, tick=self.tick, ssl_context=ssl_context or ssl.create_default_context(),
            options=options,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopped = False

    # -- what others read ----------------------------------------------------------------------
    @property
    def rules(self) -> dict[Key, tuple[AlertRuleSpec, str | None]]:
        return self.registry.rules

    @property
    def configs(self) -> dict[Key, AlertConfigSpec]:
        return self.registry.configs

    @property
    def channels(self) -> dict[Key, NotificationChannelSpec]:
        return self.registry.channels

    @property
    def given_up(self) -> Counter[tuple[str, str, str]]:
        return self.stats.given_up

    @property
    def delivered(self) -> Counter[Key]:
        return self.stats.delivered

    @property
    def failed_attempts(self) -> Counter[Key]:
        return self.stats.failed_attempts

    @property
    def failing(self) -> dict[Key, float]:
        return self.stats.failing

    @property
    def storage_problem(self) -> str | None:
        """Why the outbox is held in memory only (its file cannot be written); None while on disk."""
        return self.outbox.problem

    def channel_status(self, ns: str, name: str) -> NotificationChannelStatus:
        return self.stats.channel_status(ns, name, self.readiness.conditions.get((ns, name)))

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start delivering; rows left pending by a previous process are picked up first."""
        self.delivery.open()
        self._loops = [
            asyncio.create_task(self.delivery.run(), name="klaxon-notify-deliver"),
            asyncio.create_task(
                self.stats.run(self.readiness.conditions, self.status_interval_s), name="klaxon-notify-status"
            ),
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
        await self.stats.flush(self.readiness.conditions)
        await self.delivery.close()
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
        while self.outbox.counts().get("pending", 0) or self.delivery.inflight:
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox not drained: {self.outbox.counts()}")
            await asyncio.sleep(0.01)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _secret(self, namespace: str, ref: SecretKeySelector) -> str:
        value = await self.secrets.get(namespace, ref.name, ref.key)
        self.redactor.add(value)
        return value

    # -- the world as the operator sees it --------------------------------------------------
    async def set_config(self, namespace: str, name: str, spec: AlertConfigSpec) -> None:
        self.registry.configs[(namespace, name)] = spec

    async def set_rule(
        self, namespace: str, name: str, spec: AlertRuleSpec, annotations: Mapping[str, str] | None = None
    ) -> None:
        """Record a rule (mute, notify policy, ack annotation); an unmute notifies at once."""
        self.registry.set_rule(namespace, name, spec, annotations)
        await self.tick(only=(namespace, name))

    async def remove_rule(self, namespace: str, name: str) -> None:
        self.registry.rules.pop((namespace, name), None)

    async def set_channel(
        self,
        namespace: str,
        name: str,
        spec: NotificationChannelSpec,
        annotations: Mapping[str, str] | None = None,
    ) -> Condition:
        """Record a channel, compute its Ready condition and honour a test-delivery annotation."""
        self.registry.channels[(namespace, name)] = spec
        self.stats.known(namespace, name)
        ready = await self.readiness.update(namespace, name, spec, self.registry.allow_private(namespace))
        self.stats.dirty.add((namespace, name))
        token = (annotations or {}).get(TEST_ANNOTATION)
        if token:
            self.delivery.request_test(namespace, name, token, self.clock(), self.registry.allow_private(namespace))
        self.delivery.channel_known(namespace, name)
        return ready

    async def remove_channel(self, namespace: str, name: str) -> None:
        self.registry.channels.pop((namespace, name), None)
        self.stats.forget(namespace, name)

    # -- what the notifier holds per alert instance -----------------------------------------------
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
        self.registry.rules.pop((namespace, name), None)
        return n

    # -- the decisions -----------------------------------------------------------------------------
    async def handle(self, n: Notification) -> Decision:
        """Decide on one transition and, if it notifies, enqueue it durably for every channel."""
        policy, allow = self.registry.policy(n.rule_namespace, n.rule_name)
        k = _key(n.rule_namespace, n.rule_name, n.dedup_key)
        dropped: list[Row] = []

        def decide_and_enqueue() -> Decision:
            dropped.clear()
            raw = self.outbox.get_key(k)
            decision, st = decide(KeyState.from_json(raw) if raw else KeyState(), n, policy)
            self.outbox.put_key(k, n.rule_namespace, n.rule_name, st.firing, st.to_json())
            if decision.notify:
                self.delivery.enqueue(n, decision.kind, n.time, policy.channels, allow, dropped)
            return decision

        decision = self.outbox.write(decide_and_enqueue)
        self.delivery.report_dropped(dropped)
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
            policy, allow = self.registry.policy(ns, rule)
            enqueued += self.outbox.write(partial(self._recheck, k, ns, rule, raw, policy, allow, now, dropped))
        self.delivery.report_dropped(dropped)
        if enqueued:
            self.delivery.wake()
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
        return self.delivery.enqueue(Notification.from_json(st.last), decision.kind, now, policy.channels, allow,
                                     dropped)

    def _after_decision(self, n: Notification, d: Decision) -> None:
        if d.notify:
            self.delivery.wake()
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
