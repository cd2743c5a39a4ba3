"""The evaluator process of one AlertConfig shard (``klaxon evaluator``).

``EvaluatorProcess.run`` reads the AlertConfig, waits as a standby while another replica holds
the shard's Lease, then lists the AlertConfig's rules once and follows them by watch
(``klaxon.kube.rulefeed``: allowed namespaces, this shard's uids). Every ``tick``: apply the watch
events, hand the rules and channels to the notifier, evaluate the due rules, write changed
statuses (plus a heartbeat) within ``maxStatusWritesPerMinute``. ``/metrics`` and ``/healthz``
are served on the metrics port (``server.py``); Prometheus and the Notifier come from
``connect.py``. Time comes from the injected ``clock`` only.

The AlertConfig itself is followed by watch too (``klaxon.kube.objectfeed``): a changed spec is
applied live (``apply_config``), a changed ``status.grantedNamespaces`` rescopes the rule watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.common import parse_duration
from klaxon.api.constants import API_VERSION, LEADER_ADDRESS_ANNOTATION
from klaxon.api.refs import granted_namespaces, namespace_allowed, rules_scope
from klaxon.api.sharding import parse_shard, shard_of
from klaxon.api.validation import parse_spec
from klaxon.evaluator.connect import (
    RENEW_FAILURES,
    ConfigError,
    KubeSecretResolver,
    make_notifier,
    outbox_path,
    prometheus_client,
)
from klaxon.evaluator.core import Evaluator
from klaxon.evaluator.ingest import event_rule_statuses, event_service_for
from klaxon.evaluator.notifying import NotifyingAdapter
from klaxon.evaluator.options import ONCE_DRAIN_S, EvaluatorOptions, elector_for
from klaxon.evaluator.results import RuleRef, rule_ref
from klaxon.evaluator.server import CycleHealth, EvaluatorMetrics, forward_events, serve_http
from klaxon.evaluator.status import StatusWriter
from klaxon.events.service import EventService
from klaxon.kube.client import FAILURES, Body, KubeClient, Ref, unexpected
from klaxon.kube.lease import LeaderElector, Leadership
from klaxon.kube.objectfeed import ObjectFeed
from klaxon.kube.rulefeed import RuleFeed
from klaxon.notify import Notifier
from klaxon.notify.metrics import NotifierCollector
from klaxon.prom.client import PrometheusClient

log = logging.getLogger("klaxon.evaluator")


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
        self.elector = elector if elector is not None else elector_for(self.kube, options)
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
        self._config_feed: ObjectFeed | None = None
        self._config_seen = 0  # the config feed's version last applied
        self._prom: PrometheusClient | None = None
        #: the spec.prometheus the client was built from; a failed renewal is retried every cycle
        self._prom_built: Any = None
        self._events: EventService | None = None
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None
        #: every rule of the AlertConfig (valid or not, any shard), for the notifier
        self._known: dict[str, dict[str, Any]] = {}
        #: status.grantedNamespaces as last read
        self._granted: list[str] = []

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
        self._generation(cfg_obj)
        self._pace()
        self.health = CycleHealth(self.health.stale_s, self.monotonic)
        if self.elector is not None:
            self._own_lease(cfg_obj)
            try:
                leading = await self._stand_by(leadership)
            except BaseException:  # cancelled, or the elector failed: the port is free again
                await self._close_server()
                raise
            if not leading:
                await self._close_server()
                return 0
        try:
            await self.start()
            while not stop.is_set():
                await self.tick()
                if self.options.once:
                    await self._drain()
                    break
                await self._sleep(stop)
        finally:
            await self.stop()
            await self._close_server()  # (when start failed before handing it to the stack)
            await leadership.release()
        return 1 if leadership.lost or self.crashed else 0

    async def start(self) -> None:
        """Build the components, list the rules once and start following them and the AlertConfig."""
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
        self._stack.push_async_callback(self._stop_events)  # after the HTTP server (LIFO)
        await self._serve()  # (a standby's server goes on serving: no gap in /healthz or events)
        self._stack.push_async_callback(self._close_server)
        self._prom = await prometheus_client(self._read_secret, self.config)
        self._prom_built = self.config.prometheus
        self._stack.push_async_callback(self._close_prometheus)
        evaluator = Evaluator(self._prom, self.config, self._adapter)
        await self.apply_config(self.config)  # (the event service starts here)
        self._evaluator = evaluator
        self._sync(await self._feed.relist(), self.clock())
        self._config_feed = ObjectFeed(
            self.kube, Ref.klaxon("AlertConfig", opts.config_namespace, opts.config_name)
        )
        for name, run in (("AlertRule watch", self._feed.run), ("AlertConfig watch", self._config_feed.run)):
            task = asyncio.create_task(run(), name=name)
            task.add_done_callback(self._watch_ended)
            self._stack.push_async_callback(_cancel, task)

    async def apply_config(self, spec: AlertConfigSpec) -> None:
        """Make ``spec`` the AlertConfig the process works with — at start and for every change the
        AlertConfig watch brings, without a restart and keeping every series' state.

        Renewed here: the notifier's view (silences, mute intervals, grouping, default channels),
        the status writer's budget and heartbeat (statusInterval, maxStatusWritesPerMinute), the
        cycle length (defaults.interval), the evaluator's rule classification (defaults), the
        Prometheus client (endpoint, auth, TLS, timeout), the event service (token, grouping,
        silences, entries; shard 0) and the rule scope (allowedNamespaces). What needs new pods
        (image, resources, shard count) rolls the Deployment instead (``operator/build.py``).
        """
        self.config = spec
        assert self._adapter is not None and self._writer is not None
        await self._adapter.sync_config(spec)
        ev = spec.evaluator
        self._writer.configure(parse_duration(ev.status_interval), ev.max_status_writes_per_minute)
        self._pace()
        if self._evaluator is not None:
            await self._renew_prometheus()
            self._evaluator.set_config(spec)
        if self.index == 0:
            await self._renew_events()
        elif spec.events.token is not None:
            log.info("shard %d/%d: event ingestion runs on shard 0 only", self.index, self.shards)
        if self._feed is not None:
            self._feed.rescope(self._scope(self._granted))
            self._forget_outside_scope()

    def _pace(self) -> None:
        """The cycle length: ``--tick``, else min(10 s, defaults.interval)."""
        self.tick_s = self.options.tick or min(10.0, parse_duration(self.config.defaults.interval))
        self.health.stale_s = max(60.0, 10 * self.tick_s)

    async def _follow_config(self) -> None:
        """Apply what the AlertConfig watch brought since the last cycle (spec, grantedNamespaces)."""
        feed = self._config_feed
        if feed is None or feed.version == self._config_seen:
            return
        self._config_seen = feed.version
        feed.changed.clear()
        obj = feed.latest
        if obj is None:
            log.warning("AlertConfig %s is gone: working on with its last spec", self.options.config)
            return
        model, problems = parse_spec("AlertConfig", obj.get("spec"))
        if problems or not isinstance(model, AlertConfigSpec):
            log.error(
                "AlertConfig %s: the new spec is not valid (%s); working on with the last valid one",
                self.options.config, "; ".join(str(p) for p in problems)[:1000],
            )
            return
        self._granted = granted_namespaces(obj)
        if model != self.config:
            log.info("AlertConfig %s changed: applying it live", self.options.config)
            await self.apply_config(model)
        elif self._feed is not None:
            self._feed.rescope(self._scope(self._granted))
        self._generation(obj)

    def _generation(self, obj: Mapping[str, Any]) -> None:
        generation = (obj.get("metadata") or {}).get("generation")
        if isinstance(generation, int):
            self.metrics.config_generation.set(generation)

    async def _renew_prometheus(self) -> None:
        """A new client when spec.prometheus changed. One that cannot be built yet (say, its Secret
        comes a moment after the AlertConfig) leaves the old one at work and is tried every cycle."""
        if self.config.prometheus == self._prom_built or self._evaluator is None:
            return
        try:
            fresh = await prometheus_client(self._read_secret, self.config)
        except RENEW_FAILURES as e:
            log.error(
                "AlertConfig %s: spec.prometheus cannot be used yet (%s); the previous endpoint stays in "
                "use, trying again next cycle", self.options.config, e,
            )
            return
        old, self._prom, self._prom_built = self._prom, fresh, self.config.prometheus
        self._evaluator.client = fresh
        if old is not None:
            await old.close()
        log.info("AlertConfig %s: Prometheus client renewed", self.options.config)

    async def _close_prometheus(self) -> None:
        if self._prom is not None:
            await self._prom.close()

    async def _renew_events(self) -> None:
        """Shard 0's event service follows spec.events.token: started when it is set, stopped
        (its state saved) when it is removed, and handed every other change (``set_config``)."""
        opts = self.options
        if self.config.events.token is None:
            if self._events is not None:
                log.info("spec.events.token removed: POST /v1/events is off")
                await self._stop_events()
            return
        if self._events is not None:
            self._events.set_config(self.config)
            return
        assert self.notifier is not None
        self._events = await event_service_for(
            self.kube, opts.config_namespace, opts.config_name, self.config, self.metrics.registry,
            notifier=self.notifier, state_dir=opts.state_dir, secrets=self.secrets,
        )
        if self._events is not None:
            await self._events.start()

    async def _serve(self) -> None:
        """The one HTTP server of the process (metrics, health, events), from standby to the end."""
        if self._runner is None and self.options.metrics_port:
            self._runner = await serve_http(self.metrics, self.health, self.options.metrics_port, forward=self._route)

    async def _close_server(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/events``: a standby hands it to the leader; shard 0's leader holds grouping and
        cooldown state and takes it (while spec.events.token is set); other shards have no such route."""
        if not self.health.leading and self.elector is not None:
            return await forward_events(request, self.elector.holder_annotation(LEADER_ADDRESS_ANNOTATION))
        if self.index != 0:
            raise web.HTTPNotFound()
        return await self._post_events(request)

    async def _stop_events(self) -> None:
        events, self._events = self._events, None
        if events is not None:
            await events.stop()

    async def _post_events(self, request: web.Request) -> web.StreamResponse:
        events = self._events
        if events is None and self._evaluator is None:  # still starting: come back in a moment
            body = {"errors": [{"index": None, "field": None, "problem": "the evaluator is starting"}]}
            return web.json_response(body, status=503, headers={"Retry-After": "1"})
        if events is None:
            problem = "event ingestion is off: the AlertConfig sets no spec.events.token"
            body = {"errors": [{"index": None, "field": "spec.events.token", "problem": problem}]}
            return web.json_response(body, status=404)
        return await events.post_events(request)

    def _forget_outside_scope(self) -> None:
        """Rules no longer allowed (allowedNamespaces shrank) are nobody's now: they resolve."""
        ev, writer = self._evaluator, self._writer
        if ev is None or writer is None:
            return
        for ref in ev.rules:
            if not self._mine(ref):
                ev.remove(ref.uid, self.clock(), resolve=True)
                writer.forget(ref.namespace, ref.name)

    async def _sleep(self, stop: asyncio.Event) -> None:
        """Until the next cycle, or earlier when the AlertConfig changed (applied at once)."""
        waits = [asyncio.ensure_future(stop.wait())]
        if self._config_feed is not None:
            waits.append(asyncio.ensure_future(self._config_feed.changed.wait()))
        try:
            await asyncio.wait(waits, timeout=self.tick_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def tick(self) -> None:
        """One cycle at ``clock()``: watch events, notifier sync, evaluation, status writes, metrics."""
        assert self._feed is not None and self._evaluator is not None and self._writer is not None
        notifier = self.notifier
        assert notifier is not None and self._adapter is not None
        await self._follow_config()
        await self._renew_prometheus()  # (a no-op unless a renewal is still owed)
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
        for ns, name, status in event_rule_statuses(self._events, now):
            states[f"{ns}/{name}"] = status["state"]
            items.append((ns, name, status))
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
        assert self.elector is not None
        self.health.leading = False
        await self._serve()
        leading = await leadership.acquire()
        if leading:
            self.health.lead()
        return leading

    # -- the rules -------------------------------------------------------------------------
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
        log.error("the %s stopped; exiting", task.get_name(), exc_info=task.exception())
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
                log.warning("listing NotificationChannels in %s failed: %s", ns, e, exc_info=unexpected(e))
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
