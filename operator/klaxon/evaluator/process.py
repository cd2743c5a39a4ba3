"""The evaluator process of one AlertConfig shard (``klaxon evaluator``).

``EvaluatorProcess.run`` reads the AlertConfig, waits as a standby while another replica holds
the shard's Lease, then lists the AlertConfig's rules once and follows them by watch
(``klaxon.kube.rulefeed``: allowed namespaces, this shard's uids). Every ``tick``: apply the watch
events, hand the rules and channels to the notifier, evaluate the due rules, write changed
statuses (plus a heartbeat) within ``maxStatusWritesPerMinute``. ``/metrics`` and ``/healthz``
are served on the metrics port (``server.py``); Prometheus and the Notifier come from
``connect.py``. Time comes from the injected ``clock`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.api.common import parse_duration
from klaxon.api.constants import API_VERSION, LEADER_ADDRESS_ANNOTATION
from klaxon.api.refs import granted_namespaces, namespace_allowed, rules_scope
from klaxon.api.sharding import parse_shard, shard_of
from klaxon.api.validation import parse_spec
from klaxon.evaluator.connect import (
    DEFAULT_STATE_DIR,
    ConfigError,
    KubeSecretResolver,
    make_notifier,
    outbox_path,
    prometheus_client,
)
from klaxon.evaluator.core import Evaluator, RuleRef
from klaxon.evaluator.ingest import event_service_for
from klaxon.evaluator.notifying import NotifyingAdapter
from klaxon.evaluator.server import CycleHealth, EvaluatorMetrics, forward_events, serve_http
from klaxon.evaluator.status import StatusWriter
from klaxon.kube.client import FAILURES, Body, KubeClient, Ref
from klaxon.kube.lease import LeaderElector, Leadership, pod_identity
from klaxon.kube.rulefeed import RuleFeed
from klaxon.notify import Notifier
from klaxon.notify.metrics import NotifierCollector

log = logging.getLogger("klaxon.evaluator")

#: How long ``once`` waits for queued notifications to be delivered before it exits.
ONCE_DRAIN_S = 30.0
#: With allowedNamespaces '*', how often the AlertConfig's status.grantedNamespaces is read again.
RESCOPE_S = 10.0


@dataclass(frozen=True)
class EvaluatorOptions:
    """What ``klaxon evaluator`` is told; everything else comes from the AlertConfig."""

    config_namespace: str
    config_name: str
    shard: str = "0/1"
    #: port of /metrics, /healthz, /readyz and POST /v1/events (0: none)
    metrics_port: int = 8081
    #: seconds between cycles; 0: min(10 s, the AlertConfig's default interval)
    tick: float = 0.0
    #: run one cycle, deliver what it queued and exit
    once: bool = False
    state_dir: str = DEFAULT_STATE_DIR
    #: the shard's Lease (in the AlertConfig's namespace); "": no election
    lease: str = ""
    lease_duration: float = 15.0
    #: where standbys forward events while this replica leads ("": nowhere)
    address: str = ""
    #: how often the granted namespaces are read again (allowedNamespaces '*')
    rescope_s: float = RESCOPE_S

    @property
    def config(self) -> str:
        return f"{self.config_namespace}/{self.config_name}"


def rule_ref(obj: Mapping[str, Any]) -> RuleRef | None:
    """The RuleRef of a valid AlertRule object (invalid ones are the operator's to report)."""
    meta = obj.get("metadata") or {}
    model, problems = parse_spec("AlertRule", obj.get("spec"))
    if problems or not isinstance(model, AlertRuleSpec):
        log.info("skipping invalid rule %s/%s", meta.get("namespace"), meta.get("name"))
        return None
    return RuleRef(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""), model, obj.get("status"))


class EvaluatorProcess:
    """One evaluator shard: ``run`` = ``start``, then ``resync`` and ``tick`` until stopped, then ``stop``.

    ``clock`` is the evaluation time (tests point it at backfilled data); ``monotonic`` paces the
    loop and the health check. ``notifier``, ``elector`` and ``adapter`` are built from the options
    unless given.
    """

    def __init__(
        self,
        options: EvaluatorOptions,
        kube: KubeClient,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        notifier: Notifier | None = None,
        elector: LeaderElector | None = None,
        adapter: type[NotifyingAdapter] = NotifyingAdapter,
    ) -> None:
        self.options = options
        self.kube = kube
        self.clock = clock
        self.secrets = KubeSecretResolver(kube)
        self.monotonic = monotonic
        self.index, self.shards = parse_shard(options.shard)
        self.notifier = notifier
        self.elector = elector if elector is not None else self._elector()
        self.adapter_class = adapter
        self.metrics = EvaluatorMetrics()
        self.config = AlertConfigSpec()
        self.tick_s = options.tick
        self.health = CycleHealth(60.0, monotonic)
        self.crashed = False
        self._stack = contextlib.AsyncExitStack()
        self._adapter: NotifyingAdapter | None = None
        self._writer: StatusWriter | None = None
        self._evaluator: Evaluator | None = None
        self._feed: RuleFeed | None = None
        self._stop: asyncio.Event | None = None
        #: every rule of the AlertConfig (valid or not, any shard), for the notifier
        self._known: dict[str, dict[str, Any]] = {}
        #: status.grantedNamespaces as last read
        self._granted: list[str] = []
        self._next_rescope = 0.0

    # -- the whole life --------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        """Until ``stop`` (or ``once``); 1 when the Lease was lost or the rule watch crashed."""
        self._stop = stop
        leadership = Leadership(self.elector, stop)
        cfg_obj = await self._read_config()
        if cfg_obj is None:
            raise ConfigError(f"AlertConfig {self.options.config} not found")
        self.config = AlertConfigSpec.model_validate(cfg_obj.get("spec") or {})
        self._granted = granted_namespaces(cfg_obj)
        self.tick_s = self.options.tick or min(10.0, parse_duration(self.config.defaults.interval))
        self.health = CycleHealth(max(60.0, 10 * self.tick_s), self.monotonic)
        if self.elector is not None:
            self._own_lease(cfg_obj)
            if not await self._stand_by(leadership):
                return 0
        try:
            await self.start()
            while not stop.is_set():
                if self._everywhere and self.monotonic() >= self._next_rescope:
                    await self.resync()
                await self.tick()
                if self.options.once:
                    await self._drain()
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.tick_s)
        finally:
            await self.stop()
            await leadership.release()
        return 1 if leadership.lost or self.crashed else 0

    async def start(self) -> None:
        """Build the components, list the rules once and start following them."""
        opts = self.options
        if self.notifier is None:
            self.notifier = make_notifier(self.kube, outbox_path(opts.state_dir, opts.shard), self.clock, self.secrets)
        notifier = self.notifier
        await notifier.start()
        self._stack.push_async_callback(notifier.stop)
        self.metrics.registry.register(NotifierCollector(notifier))
        self._adapter = self.adapter_class(notifier, opts.config_namespace, opts.config_name, self.config)
        self._writer = StatusWriter(
            self._write_status,
            parse_duration(self.config.evaluator.status_interval),
            self.config.evaluator.max_status_writes_per_minute,
        )
        self._feed = RuleFeed(self.kube, opts.config_namespace, opts.config_name, self._scope(self._granted))
        await self.apply_config(self.config)
        events = None
        if self.index == 0:  # one place holds grouping and cooldown state: shard 0 (its leader)
            events = await event_service_for(
                self.kube, opts.config_namespace, opts.config_name, self.config, self.metrics.registry,
                notifier=notifier, state_dir=opts.state_dir, secrets=self.secrets,
            )
        elif self.config.events.token is not None:
            log.info("shard %d/%d: event ingestion runs on shard 0 only", self.index, self.shards)
        if opts.metrics_port:
            runner = await serve_http(self.metrics, self.health, opts.metrics_port, events=events)
            self._stack.push_async_callback(runner.cleanup)
        prom = await self._stack.enter_async_context(await prometheus_client(self._read_secret, self.config))
        self._evaluator = Evaluator(prom, self.config, self._adapter)
        self._next_rescope = self.monotonic() + opts.rescope_s
        self._sync(await self._feed.relist(), self.clock())
        watcher = asyncio.create_task(self._feed.run(), name="klaxon-rule-feed")
        watcher.add_done_callback(self._watch_ended)
        self._stack.push_async_callback(_cancel, watcher)

    async def apply_config(self, spec: AlertConfigSpec) -> None:
        """Make ``spec`` the AlertConfig the process works with.

        The seam for following AlertConfig edits live: the process reads ``self.config`` (scope,
        shard filter, defaults) rather than copies; today this runs once at start and hands the
        spec to the notifier (silences, grouping, default channels). What a later call must also
        renew: the status writer's budget and heartbeat, the evaluator's rule classification, the
        Prometheus client (endpoint, auth), the event service and the rule scope.
        """
        self.config = spec
        assert self._adapter is not None
        await self._adapter.sync_config(spec)

    async def resync(self) -> None:
        """Read ``status.grantedNamespaces`` again and follow the namespaces it adds or drops."""
        self._next_rescope = self.monotonic() + self.options.rescope_s
        assert self._feed is not None
        try:
            cfg_obj = await self._read_config()
        except FAILURES as e:
            log.warning(
                "reading AlertConfig %s failed (%s): namespaces unchanged", self.options.config, e, exc_info=True
            )
            return
        if cfg_obj is None:
            log.warning("AlertConfig %s not found: namespaces unchanged", self.options.config)
            return
        self._granted = granted_namespaces(cfg_obj)
        self._feed.rescope(self._scope(self._granted))

    async def tick(self) -> None:
        """One cycle at ``clock()``: watch events, notifier sync, evaluation, status writes, metrics."""
        assert self._feed is not None and self._evaluator is not None and self._writer is not None
        notifier = self.notifier
        assert notifier is not None and self._adapter is not None
        now = self.clock()
        for kind, obj in self._feed.drain():
            if kind == "SYNC":
                self._sync(obj, now)
            else:
                self._apply(kind, obj, now)
        try:
            await self._sync_notifier()
        except Exception:  # a bulkhead: notifications wait for the next sync, evaluation goes on
            log.exception("syncing the notifier failed")
        res = await self._evaluator.cycle(now)
        try:
            await notifier.tick()  # repeatInterval, mute ends, schedules opening
        except Exception:  # a bulkhead, as above
            log.exception("notifier tick failed")
        states = {key: str(rr.status.get("state")) for key, rr in res.rules.items()}
        items: list[tuple[str, str, dict[str, Any]]] = []
        for key, rr in res.rules.items():
            ns, _, name = key.partition("/")
            items.append((ns, name, rr.status))
        report = await self._writer.write_all(items, now)
        deferred = report.deferred_changes + report.deferred_heartbeats
        self.metrics.status_writes.inc(len(report.written))
        self.metrics.status_write_errors.inc(len(report.failed))
        self.metrics.status_writes_deferred.inc(deferred)
        self.metrics.observe(res, states)
        self.health.cycled()
        log.info(
            "cycle: %d rules, %d queries, %d notifications, %d status writes (%d deferred), %.3fs",
            len(res.rules), res.queries, len(res.notifications), len(report.written), deferred, res.duration_s,
        )

    async def stop(self) -> None:
        """Stop following rules, close Prometheus, the HTTP server and the notifier (in that order)."""
        await self._stack.aclose()

    # -- leadership ------------------------------------------------------------------------
    def _elector(self) -> LeaderElector | None:
        """``lease``: one active replica per shard, the others stand by (Lease in the config's namespace)."""
        opts = self.options
        if not opts.lease:
            return None
        d = opts.lease_duration
        return LeaderElector(
            self.kube,
            opts.config_namespace,
            opts.lease,
            pod_identity(),
            duration=d,
            renew=max(0.2, d / 3),
            retry=max(0.2, d / 3),
            deadline=max(0.5, d * 2 / 3),
            annotations={LEADER_ADDRESS_ANNOTATION: opts.address} if opts.address else {},
        )

    def _own_lease(self, cfg_obj: Mapping[str, Any]) -> None:
        assert self.elector is not None
        meta = cfg_obj.get("metadata") or {}
        if not self.elector.owner_references and meta.get("uid"):  # the Lease goes when the AlertConfig goes
            self.elector.owner_references = [
                {"apiVersion": API_VERSION, "kind": "AlertConfig", "name": self.options.config_name, "uid": meta["uid"]}
            ]

    async def _stand_by(self, leadership: Leadership) -> bool:
        """Serve /healthz and /readyz and forward ``POST /v1/events`` to the leader until the Lease
        is ours (True) or we stop (False)."""
        elector = self.elector
        assert elector is not None
        self.health.leading = False

        async def forward(request: web.Request) -> web.StreamResponse:
            return await forward_events(request, elector.holder_annotation(LEADER_ADDRESS_ANNOTATION))

        port = self.options.metrics_port
        runner = await serve_http(self.metrics, self.health, port, forward=forward) if port else None
        try:
            leading = await leadership.acquire()
        finally:
            if runner is not None:
                await runner.cleanup()
        if leading:
            self.health.lead()
        return leading

    # -- the rules -------------------------------------------------------------------------
    @property
    def _everywhere(self) -> bool:
        """allowedNamespaces '*': follow the namespaces the operator grants."""
        return "*" in self.config.allowed_namespaces

    def _scope(self, granted: list[str]) -> list[str]:
        return rules_scope(self.options.config_namespace, self.config.allowed_namespaces, granted)

    def _mine(self, ref: RuleRef) -> bool:
        allowed = namespace_allowed(
            ref.namespace, config_namespace=self.options.config_namespace, allowed=self.config.allowed_namespaces
        )
        return allowed and shard_of(ref.uid, self.shards) == self.index

    def _admit(self, ref: RuleRef, now: float) -> None:
        assert self._evaluator is not None and self._writer is not None
        if ref.uid not in self._evaluator and ref.status:
            self._writer.seed(ref.namespace, ref.name, ref.status, now)
        self._evaluator.upsert(ref)

    def _sync(self, items: list[dict[str, Any]], now: float) -> None:
        """The whole picture (a list): admit this shard's rules, drop the ones no longer listed."""
        ev, writer = self._evaluator, self._writer
        assert ev is not None and writer is not None
        self._known = {str((i.get("metadata") or {}).get("uid", "")): i for i in items}
        refs = [r for obj in items if (r := rule_ref(obj)) is not None and self._mine(r)]
        keep = {r.uid for r in refs}
        for old in ev.rules:
            if old.uid not in keep:
                # gone while the watch was down: deleted unless it still exists elsewhere
                ev.remove(old.uid, now, resolve=old.uid not in self._known)
                writer.forget(old.namespace, old.name)
        for r in refs:
            self._admit(r, now)

    def _apply(self, kind: str, obj: dict[str, Any], now: float) -> None:
        """One watch event: ADDED, MODIFIED, DELETED or MOVED (now another AlertConfig's)."""
        ev, writer = self._evaluator, self._writer
        assert ev is not None and writer is not None
        meta = obj.get("metadata") or {}
        uid, ns, name = str(meta.get("uid", "")), str(meta.get("namespace", "")), str(meta.get("name", ""))
        if kind == "DELETED":
            self._known.pop(uid, None)
        else:
            self._known[uid] = obj
        ref = rule_ref(obj) if kind in ("ADDED", "MODIFIED") else None
        if ref is not None and self._mine(ref):
            self._admit(ref, now)
        elif uid in ev:
            # deleted, or now invalid: nobody evaluates it any more. Moved to another config or
            # shard: that evaluator restores it from status, nothing resolves.
            gone = kind == "DELETED" or (kind == "MODIFIED" and ref is None)
            ev.remove(uid, now, resolve=gone)
            writer.forget(ns, name)

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        log.error("the AlertRule watch stopped; exiting", exc_info=task.exception())
        self.crashed = True
        if self._stop is not None:
            self._stop.set()

    # -- I/O -------------------------------------------------------------------------------
    async def _read_config(self) -> Body | None:
        return await self.kube.get(Ref.klaxon("AlertConfig", self.options.config_namespace, self.options.config_name))

    async def _write_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.kube.patch_status(Ref.klaxon("AlertRule", namespace, name), status)

    async def _read_secret(self, name: str, key: str) -> str:
        return await self.secrets.get(self.options.config_namespace, name, key)

    async def _sync_notifier(self) -> None:
        """Hand the AlertRules and the NotificationChannels of their namespaces to the notifier;
        a namespace whose channels cannot be listed waits for the next cycle."""
        adapter = self._adapter
        assert adapter is not None
        await adapter.sync_rules(list(self._known.values()))
        for ns in adapter.namespaces:
            try:
                channels = await self.kube.list(Ref.klaxon("NotificationChannel", ns))
            except FAILURES as e:
                log.warning("listing NotificationChannels in %s failed: %s", ns, e, exc_info=True)
                continue
            await adapter.sync_channels(ns, channels)

    async def _drain(self) -> None:
        assert self.notifier is not None
        try:
            await self.notifier.wait_idle(ONCE_DRAIN_S)
        except TimeoutError as e:  # left in the outbox for the next run
            log.warning("notifications still queued at exit: %s", e)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel and await ``task``; an error it ended with was logged by its done callback."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
