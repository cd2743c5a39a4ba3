"""`klaxon evaluator --config NS/NAME [--shard I/N]`: evaluate an AlertConfig's rules in a loop.

Lists the AlertRules of the AlertConfig once, then follows them by watch (allowed namespaces
and this shard's uids only). Every tick: evaluate the due rules, write changed statuses (plus a
heartbeat) within `maxStatusWritesPerMinute`, hand notifications over. `/metrics` and `/healthz`
are served on `--metrics-port`.

Notifications go through one ``klaxon.notify.Notifier`` per process: its durable outbox (SQLite)
lives in ``--state-dir``; Secrets are read and channel/rule status and Events written through
``klaxon.kube.notify_io``. Each cycle re-lists the AlertConfig, its AlertRules and the
NotificationChannels of their namespaces and hands changed objects to the notifier (mute, ack,
test deliveries), then evaluates; metric transitions and live events share the notifier.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.api.common import parse_duration
from klaxon.api.validation import parse_spec
from klaxon.engine.types import STATES
from klaxon.evaluator import (
    CycleResult,
    Evaluator,
    RuleRef,
    StatusWriter,
    parse_shard,
    shard_of,
)
from klaxon.evaluator.ingest import EVENTS_PATH, EventService, event_service_for, mount_event_routes
from klaxon.evaluator.notifying import NotifyingAdapter
from klaxon.kube.lease import LeaderElector
from klaxon.notify import Notifier
from klaxon.notify.metrics import NotifierCollector
from klaxon.prom.client import PrometheusClient

log = logging.getLogger("klaxon.evaluator")

#: The evaluation clock (tests point it at backfilled data in the past).
clock: Callable[[], float] = time.time

DEFAULT_STATE_DIR = "/var/lib/klaxon"
#: How long `--once` waits for queued notifications to be delivered before it exits.
ONCE_DRAIN_S = 30.0


def outbox_path(state_dir: str | Path, shard: str) -> Path:
    """The outbox file of one shard in the state directory (the outbox creates what is missing, and
    works from memory, saying so, where it cannot: an unwritable state dir is no crash loop)."""
    index, shards = parse_shard(shard)
    return Path(state_dir) / (f"outbox-{index}of{shards}.sqlite" if shards > 1 else "outbox.sqlite")


def make_notifier(api_client: Any, path: Path, **kwargs: Any) -> Notifier:
    """The process' Notifier: Secrets and status through the API, on the evaluation clock."""
    from klaxon.kube.notify_io import KubeSecretResolver, KubeStatusSink

    return Notifier(
        path,
        KubeSecretResolver(api_client),
        KubeStatusSink(api_client),
        clock=lambda: datetime.fromtimestamp(clock(), UTC),
        **kwargs,
    )


@dataclass
class Metrics:
    """The evaluator's own metrics, on a private registry."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.cycle_duration = Histogram(
            "klaxon_evaluator_cycle_duration_seconds", "Wall time of one evaluation cycle.", registry=r
        )
        self.rules = Gauge("klaxon_evaluator_rules", "Rules of this shard by state.", ["state"], registry=r)
        self.queries = Counter(
            "klaxon_evaluator_queries_total", "Prometheus queries sent (after batching).", registry=r
        )
        self.query_errors = Counter(
            "klaxon_evaluator_query_errors_total", "Prometheus queries that failed.", registry=r
        )
        self.status_writes = Counter("klaxon_evaluator_status_writes_total", "AlertRule status writes.", registry=r)
        self.status_writes_deferred = Counter(
            "klaxon_evaluator_status_writes_deferred_total",
            "Status writes put off to a later cycle by maxStatusWritesPerMinute.",
            registry=r,
        )
        self.status_write_errors = Counter(
            "klaxon_evaluator_status_write_errors_total", "AlertRule status writes that failed.", registry=r
        )
        self.last_cycle = Gauge(
            "klaxon_evaluator_last_cycle_timestamp_seconds", "When the last cycle finished.", registry=r
        )
        # One series per rule (value 1, its current state): rules x 1, not rules x states.
        self.rule_state = Gauge(
            "klaxon_rule_state",
            "The rule's state (1 on its current state).",
            ["namespace", "rule", "state"],
            registry=r,
        )
        self._rule_state: dict[str, str] = {}

    def observe(self, res: CycleResult, states: Mapping[str, str]) -> None:
        self.cycle_duration.observe(res.duration_s)
        self.queries.inc(res.queries)
        self.query_errors.inc(res.query_errors)
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for s in states.values():
            counts[s] = counts.get(s, 0) + 1
        for state, n in counts.items():
            self.rules.labels(state=state).set(n)
        for key in set(self._rule_state) - set(states):
            ns, _, name = key.partition("/")
            self.rule_state.remove(ns, name, self._rule_state.pop(key))
        for key, state in states.items():
            old = self._rule_state.get(key)
            if old != state:
                ns, _, name = key.partition("/")
                if old is not None:
                    self.rule_state.remove(ns, name, old)
                self.rule_state.labels(ns, name, state).set(1)
                self._rule_state[key] = state
        self.last_cycle.set(time.time())


class Health:
    """Healthy while cycles keep finishing: the last one ended less than `stale_s` ago."""

    def __init__(self, stale_s: float) -> None:
        self.stale_s = stale_s
        self.started = time.monotonic()
        self.last_cycle: float | None = None
        #: False while a standby replica waits for its shard's Lease (alive and ready all the same).
        self.leading = True

    def ok(self) -> bool:
        if not self.leading:
            return True  # a standby runs no cycles: alive and ready to take over is all it can be
        ref = self.last_cycle if self.last_cycle is not None else self.started
        return time.monotonic() - ref < self.stale_s

    def lead(self) -> None:
        """This replica took over: cycles start now (standby time does not count as stale)."""
        self.leading, self.started, self.last_cycle = True, time.monotonic(), None


async def serve_http(
    metrics: Metrics,
    health: Health,
    port: int,
    host: str = "0.0.0.0",
    events: EventService | None = None,
    forward: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
) -> web.AppRunner:
    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_handler(_: web.Request) -> web.Response:
        return web.Response(text="ok\n" if health.ok() else "stale\n", status=200 if health.ok() else 503)

    async def ready_handler(_: web.Request) -> web.Response:
        # Standbys are ready too: a rollout replaces pods one by one (a new standby comes up, the
        # old leader goes and hands the Lease over), and a standby forwards events to the leader.
        if not health.leading:
            return web.Response(text="standby (the shard's Lease is held by another replica)\n")
        return await health_handler(_)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    app.router.add_get("/readyz", ready_handler)
    if events is not None:  # live event rules: POST /v1/events (klaxon.evaluator.ingest)
        mount_event_routes(app, events)
    elif forward is not None:  # a standby: the leader takes events
        app.router.add_post(EVENTS_PATH, forward)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def rule_ref(obj: Mapping[str, Any]) -> RuleRef | None:
    """The RuleRef of a valid AlertRule object (invalid ones are the operator's to report)."""
    meta = obj.get("metadata") or {}
    model, problems = parse_spec("AlertRule", obj.get("spec"))
    if problems or not isinstance(model, AlertRuleSpec):
        log.info("skipping invalid rule %s/%s", meta.get("namespace"), meta.get("name"))
        return None
    return RuleRef(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""), model, obj.get("status"))


def rule_refs(items: list[dict[str, Any]]) -> list[RuleRef]:
    """RuleRefs of the valid AlertRule objects."""
    return [ref for obj in items if (ref := rule_ref(obj)) is not None]


async def prometheus_client(api_client: Any, namespace: str, config: AlertConfigSpec) -> PrometheusClient:
    """A PrometheusClient from the AlertConfig's endpoint, auth and TLS (Secrets in its namespace).

    Credentials are read through `klaxon.kube` and handed to the client only; the CA bundle and a
    client certificate and key go to private temporary files (mode 0600) that are removed once
    the SSL context is built.
    """
    from klaxon.kube.status import read_secret_key

    ep = config.prometheus
    if ep is None:  # an events-only config: its metric rules (if any) report this as their error
        return PrometheusClient.unconfigured_because(
            "the AlertConfig sets no spec.prometheus endpoint: only event rules can be evaluated"
        )

    async def secret(sel: Any) -> str:
        return await read_secret_key(api_client, namespace, sel.name, sel.key)

    token = basic = None
    if ep.auth is not None and ep.auth.bearer_token is not None:
        token = await secret(ep.auth.bearer_token)
    if ep.auth is not None and ep.auth.basic_auth is not None:
        basic = (await secret(ep.auth.basic_auth.username), await secret(ep.auth.basic_auth.password))
    tls = ep.tls
    files: dict[str, str] = {}  # ca / cert / key PEM, each in a private file while the context is built

    async def to_file(what: str, sel: Any) -> None:
        if sel is not None:
            fd, files[what] = tempfile.mkstemp(prefix=f"klaxon-{what}-", suffix=".pem")  # mode 0600
            with os.fdopen(fd, "w") as f:
                f.write(await secret(sel))

    try:
        if tls is not None:
            await to_file("ca", tls.ca)
            await to_file("cert", tls.cert)
            await to_file("key", tls.key)
            if ("cert" in files) != ("key" in files):
                raise SystemExit("spec.prometheus.tls: cert and key go together (a client certificate needs both)")
        return PrometheusClient(
            ep.url,
            token=token,
            basic_auth=basic,
            ca_file=files.get("ca"),
            cert_file=files.get("cert"),
            key_file=files.get("key"),
            server_name=tls.server_name if tls is not None else None,
            insecure=bool(tls and tls.insecure_skip_verify),
            timeout=parse_duration(ep.timeout),
        )
    finally:
        for path in files.values():
            with contextlib.suppress(OSError):
                os.unlink(path)


class RuleFeed:
    """The AlertConfig's rules: one list at start, then a watch per namespace of ``scope``; events
    queue up for the main loop.

    A watch that ends is resumed from the last resourceVersion; one that fails (410 Gone, a
    connection error, 403 while its Role is not there yet) lists that namespace again — with
    backoff up to 30 s — and queues the whole picture as one `SYNC` event. A namespace that cannot
    be listed keeps the rules last seen there: a transient error never looks like deleted rules.
    """

    def __init__(
        self, api_client: Any, namespace: str, name: str, scope: list[str], backoff: float = 1.0
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.name = name
        #: The namespaces to list and watch (one watch each).
        self.scope = sorted(set(scope))
        self.backoff = backoff
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.resource_versions: dict[str, str] = {}
        #: per namespace the rules last seen there, by uid
        self.items: dict[str, dict[str, dict[str, Any]]] = {}
        self.failing: set[str] = set()
        self.lists = 0
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._running = False

    def snapshot(self) -> list[dict[str, Any]]:
        return [obj for ns in self.scope for obj in self.items.get(ns, {}).values()]

    async def _list(self, namespace: str) -> bool:
        from klaxon.kube.status import list_rules

        try:
            found, rv = await list_rules(self.api_client, self.namespace, self.name, namespace)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            code = getattr(e, "status", "")
            log.warning("listing AlertRules in %s failed (%s %s)", namespace, type(e).__name__, code)
            self.failing.add(namespace)
            return False
        self.items[namespace] = {_uid(o): o for o in found}
        self.resource_versions[namespace] = rv
        self.failing.discard(namespace)
        return True

    async def relist(self) -> list[dict[str, Any]]:
        """List every namespace (one that fails keeps its last rules and is retried by its watch)."""
        for ns in self.scope:
            await self._list(ns)
        self.lists += 1
        return self.snapshot()

    async def run(self) -> None:
        """Follow every namespace of the scope (``rescope`` changes it while running) until cancelled."""
        self._running = True
        try:
            for ns in self.scope:
                self._start(ns)
            await asyncio.Event().wait()
        finally:
            self._running = False
            tasks = list(self._followers.values())
            self._followers.clear()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, namespace: str) -> None:
        self._followers[namespace] = asyncio.create_task(self._follow(namespace), name=f"klaxon-rules-{namespace}")

    def rescope(self, scope: list[str]) -> None:
        """Follow ``scope`` from now on: new namespaces are listed and watched; rules of the ones
        left are dropped (one ``SYNC``)."""
        if set(scope) == set(self.scope):
            return
        old, self.scope = set(self.scope), sorted(set(scope))
        for ns in set(scope) - old:
            log.info("following AlertRules in namespace %s", ns)
            if self._running:
                self._start(ns)
        left = old - set(scope)
        for ns in left:
            log.info("no longer following AlertRules in namespace %s", ns)
            task = self._followers.pop(ns, None)
            if task is not None:
                task.cancel()
            self.items.pop(ns, None)
            self.resource_versions.pop(ns, None)
            self.failing.discard(ns)
        if left:
            self.events.put_nowait(("SYNC", self.snapshot()))

    def _track(self, namespace: str, kind: str, obj: dict[str, Any]) -> None:
        seen = self.items.setdefault(namespace, {})
        if kind in ("ADDED", "MODIFIED"):
            seen[_uid(obj)] = obj
        else:  # DELETED, MOVED
            seen.pop(_uid(obj), None)

    async def _follow(self, namespace: str) -> None:
        from klaxon.kube.status import watch_rules

        delay = self.backoff
        while True:
            if namespace in self.failing or namespace not in self.resource_versions:
                if not await self._list(namespace):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                self.events.put_nowait(("SYNC", self.snapshot()))
            delay = self.backoff
            try:
                async for kind, obj in watch_rules(
                    self.api_client, self.namespace, self.name, namespace, self.resource_versions.get(namespace, "")
                ):
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.resource_versions[namespace] = str(rv)
                    self._track(namespace, kind, obj)
                    self.events.put_nowait((kind, obj))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                code = getattr(e, "status", "")
                what = (namespace, type(e).__name__, code)
                log.warning("watch of AlertRules in %s failed (%s %s); listing again", *what)
                self.failing.add(namespace)
                await asyncio.sleep(delay)

    def drain(self) -> list[tuple[str, Any]]:
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out


def _uid(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


async def sync_notifier(api_client: Any, adapter: NotifyingAdapter, items: list[dict[str, Any]]) -> None:
    """Hand the AlertRules and the NotificationChannels of their namespaces to the notifier."""
    from klaxon.kube.status import ApiException, list_channels

    await adapter.sync_rules(items)
    for ns in adapter.namespaces:
        try:
            channels = await list_channels(api_client, ns)
        except ApiException as e:
            log.warning("listing NotificationChannels in %s failed: %s %s", ns, e.status, e.reason)
            continue
        await adapter.sync_channels(ns, channels)


LEADER_ADDRESS = "klaxon.dev/leader-address"
#: With allowedNamespaces '*', how often the AlertConfig's status.grantedNamespaces is read again.
RESCOPE_S = 10.0
_FORWARDED = ("Authorization", "Content-Type")


async def forward_events(request: web.Request, leader: str | None) -> web.StreamResponse:
    """Hand one ``POST /v1/events`` to the leader (``host:port`` from its Lease) and relay the answer;
    503 with Retry-After while no leader is known or it cannot be reached."""

    def unavailable(problem: str) -> web.Response:
        body = {"errors": [{"index": None, "field": None, "problem": problem}]}
        return web.json_response(body, status=503, headers={"Retry-After": "1"})

    if not leader:
        return unavailable("this evaluator is a standby and no leader is known yet")
    body = await request.read()
    headers = {k: request.headers[k] for k in _FORWARDED if k in request.headers}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.post(
            f"http://{leader}{EVENTS_PATH}", data=body, headers=headers
        ) as resp:
            answer = await resp.read()
            kept = ("Content-Type", "Retry-After", "WWW-Authenticate")
            relay = {k: resp.headers[k] for k in kept if k in resp.headers}
            return web.Response(body=answer, status=resp.status, headers=relay)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("forwarding events to the leader at %s failed: %s", leader, type(exc).__name__)
        return unavailable("the leader could not be reached")


async def wait_for_lease(
    elector: LeaderElector, health: Health, metrics: Metrics, port: int, stop: asyncio.Event
) -> bool:
    """A standby: serve /healthz and /readyz, forward ``POST /v1/events`` to the leader, until the
    Lease is ours or we stop."""
    health.leading = False

    async def forward(request: web.Request) -> web.StreamResponse:
        return await forward_events(request, elector.holder_annotation(LEADER_ADDRESS))

    runner = await serve_http(metrics, health, port, forward=forward) if port else None
    acquire = asyncio.create_task(elector.acquire())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (acquire, stopped):
            t.cancel()
        if runner is not None:
            await runner.cleanup()
    if elector.leading.is_set():
        health.lead()
    return health.leading


async def run_loop(
    args: argparse.Namespace,
    api_client: Any,
    stop: asyncio.Event,
    notifier: Notifier | None = None,
    elector: LeaderElector | None = None,
) -> int:
    """The evaluator. With ``elector``: wait as a standby until this replica holds the shard's
    Lease; losing it later stops the loop with exit code 1 (the pod restarts as a standby)."""
    from klaxon.kube.status import get_config, granted_namespaces, namespace_allowed, patch_rule_status, rules_scope

    cfg_ns, _, cfg_name = args.config.partition("/")
    index, shards = parse_shard(args.shard)
    cfg_obj = await get_config(api_client, cfg_ns, cfg_name)
    config = AlertConfigSpec.model_validate(cfg_obj.get("spec") or {})
    metrics = Metrics()
    tick = args.tick if args.tick else min(10.0, parse_duration(config.defaults.interval))
    health = Health(stale_s=max(60.0, 10 * tick))
    keeper: asyncio.Task[None] | None = None
    if elector is not None:
        meta = cfg_obj.get("metadata") or {}
        if not elector.owner_references and meta.get("uid"):  # the Lease goes when the AlertConfig goes
            elector.owner_references = [
                {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertConfig", "name": cfg_name, "uid": meta["uid"]}
            ]
        if not await wait_for_lease(elector, health, metrics, args.metrics_port, stop):
            return 0
        keeper = asyncio.create_task(elector.keep())
        keeper.add_done_callback(lambda _: stop.set())
    if notifier is None:
        notifier = make_notifier(api_client, outbox_path(args.state_dir, args.shard))
    await notifier.start()
    metrics.registry.register(NotifierCollector(notifier))
    adapter = NotifyingAdapter(notifier, cfg_ns, cfg_name, config)
    runner: web.AppRunner | None = None

    async def write(ns: str, name: str, status: dict[str, Any]) -> None:
        await patch_rule_status(api_client, ns, name, status)

    writer = StatusWriter(
        write, parse_duration(config.evaluator.status_interval), config.evaluator.max_status_writes_per_minute
    )

    def mine(ref: RuleRef) -> bool:
        return namespace_allowed(ref.namespace, cfg_ns, config.allowed_namespaces) and (
            shard_of(ref.uid, shards) == index
        )

    everywhere = "*" in config.allowed_namespaces  # follow the namespaces the operator grants
    scope = rules_scope(cfg_ns, config.allowed_namespaces, granted_namespaces(cfg_obj))
    feed = RuleFeed(api_client, cfg_ns, cfg_name, scope)
    next_rescope = time.monotonic() + RESCOPE_S
    watcher: asyncio.Task[None] | None = None
    try:
        await adapter.sync_config(config)
        events = None
        if index == 0:  # one place holds grouping and cooldown state: shard 0 (its leader)
            events = await event_service_for(
                api_client, cfg_ns, cfg_name, config, metrics.registry, notifier=notifier, state_dir=args.state_dir
            )
        elif config.events.token is not None:
            log.info("shard %d/%d: event ingestion runs on shard 0 only", index, shards)
        runner = await serve_http(metrics, health, args.metrics_port, events=events) if args.metrics_port else None
        async with await prometheus_client(api_client, cfg_ns, config) as prom:
            ev = Evaluator(prom, config, adapter)

            known: dict[str, dict[str, Any]] = {}  # every rule of the config, for the notifier

            def admit(ref: RuleRef, now: float) -> None:
                if ref.uid not in ev and ref.status:
                    writer.seed(ref.namespace, ref.name, ref.status, now)
                ev.upsert(ref)

            def sync(items: list[dict[str, Any]], now: float) -> None:
                known.clear()
                known.update({str((i.get("metadata") or {}).get("uid", "")): i for i in items})
                refs = [r for r in rule_refs(items) if mine(r)]
                keep = {r.uid for r in refs}
                for old in ev.rules:
                    if old.uid not in keep:
                        # gone while the watch was down: deleted unless it still exists elsewhere
                        exists = any((i.get("metadata") or {}).get("uid") == old.uid for i in items)
                        ev.remove(old.uid, now, resolve=not exists)
                        writer.forget(old.namespace, old.name)
                for r in refs:
                    admit(r, now)

            def apply(kind: str, obj: dict[str, Any], now: float) -> None:
                meta = obj.get("metadata") or {}
                uid, ns, name = str(meta.get("uid", "")), str(meta.get("namespace", "")), str(meta.get("name", ""))
                if kind == "DELETED":
                    known.pop(uid, None)
                else:
                    known[uid] = obj
                ref = rule_ref(obj) if kind in ("ADDED", "MODIFIED") else None
                if ref is not None and mine(ref):
                    admit(ref, now)
                elif uid in ev:
                    # deleted, or now invalid: nobody evaluates it any more. Moved to another config or
                    # shard: that evaluator restores it from status, nothing resolves.
                    gone = kind == "DELETED" or (kind == "MODIFIED" and ref is None)
                    ev.remove(uid, now, resolve=gone)
                    writer.forget(ns, name)

            sync(await feed.relist(), clock())
            watcher = asyncio.create_task(feed.run())
            while not stop.is_set():
                if everywhere and time.monotonic() >= next_rescope:
                    next_rescope = time.monotonic() + RESCOPE_S
                    try:
                        granted = granted_namespaces(await get_config(api_client, cfg_ns, cfg_name))
                        feed.rescope(rules_scope(cfg_ns, config.allowed_namespaces, granted))
                    except Exception as e:
                        log.warning("reading AlertConfig %s failed (%s): namespaces unchanged", args.config, e)
                now = clock()
                for kind, obj in feed.drain():
                    if kind == "SYNC":
                        sync(obj, now)
                    else:
                        apply(kind, obj, now)
                try:
                    await sync_notifier(api_client, adapter, list(known.values()))
                except Exception:  # notifications wait for the next sync; evaluation goes on
                    log.exception("syncing the notifier failed")
                res = await ev.cycle(now)
                try:
                    await notifier.tick()  # repeatInterval, mute ends, schedules opening
                except Exception:
                    log.exception("notifier tick failed")
                states = {key: str(rr.status.get("state")) for key, rr in res.rules.items()}
                items: list[tuple[str, str, dict[str, Any]]] = []
                for key, rr in res.rules.items():
                    ns, _, name = key.partition("/")
                    items.append((ns, name, rr.status))
                report = await writer.write_all(items, now)
                metrics.status_writes.inc(len(report.written))
                metrics.status_write_errors.inc(len(report.failed))
                metrics.status_writes_deferred.inc(report.deferred_changes + report.deferred_heartbeats)
                metrics.observe(res, states)
                health.last_cycle = time.monotonic()
                log.info(
                    "cycle: %d rules, %d queries, %d notifications, %d status writes (%d deferred), %.3fs",
                    len(res.rules),
                    res.queries,
                    len(res.notifications),
                    len(report.written),
                    report.deferred_changes + report.deferred_heartbeats,
                    res.duration_s,
                )
                if args.once:
                    try:
                        await notifier.wait_idle(ONCE_DRAIN_S)
                    except TimeoutError as e:  # left in the outbox for the next run
                        log.warning("notifications still queued at exit: %s", e)
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=tick)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        if runner is not None:
            await runner.cleanup()
        await notifier.stop()
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if elector is not None:
            await elector.release()
    return 1 if elector is not None and elector.lost.is_set() else 0


async def _main(args: argparse.Namespace) -> int:
    from klaxon.kube.config import api_client

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with api_client(args.kubeconfig) as api:
        return await run_loop(args, api, stop, elector=make_elector(args, api))


def make_elector(args: argparse.Namespace, api: Any) -> LeaderElector | None:
    """``--lease NAME``: one active replica per shard, the others stand by (Lease in the config's namespace)."""
    if not args.lease:
        return None
    from klaxon.kube.client import KubeClient

    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    d = args.lease_duration
    pod_ip = os.environ.get("POD_IP")
    # where standbys forward events: this pod's address while it leads
    annotations = {LEADER_ADDRESS: f"{pod_ip}:{args.metrics_port}"} if pod_ip and args.metrics_port else {}
    return LeaderElector(
        KubeClient(api, field_manager="klaxon-evaluator"),
        args.config.partition("/")[0],
        args.lease,
        identity,
        duration=d,
        renew=max(0.2, d / 3),
        retry=max(0.2, d / 3),
        deadline=max(0.5, d * 2 / 3),
        annotations=annotations,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if "/" not in args.config:
        raise SystemExit("--config must be NAMESPACE/NAME")
    parse_shard(args.shard)
    return asyncio.run(_main(args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluator",
        help="run the evaluator for one AlertConfig (shard)",
        description="Evaluate the AlertRules of an AlertConfig against Prometheus in a loop, "
        "write their status and hand notifications over.",
    )
    p.add_argument("--config", required=True, metavar="NS/NAME", help="the AlertConfig to evaluate")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="this shard (0-based) of N. Default 0/1")
    p.add_argument("--metrics-port", type=int, default=8081, help="port of /metrics and /healthz (0: none)")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig outside a cluster. Default: the usual lookup")
    p.add_argument("--tick", type=float, default=0.0, help="seconds between cycles. Default: min(10s, interval)")
    p.add_argument("--once", action="store_true", help="run one cycle, deliver what it queued and exit")
    p.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        metavar="PATH",
        help=f"directory of the notification outbox (SQLite). Default {DEFAULT_STATE_DIR}",
    )
    p.add_argument(
        "--lease",
        default="",
        metavar="NAME",
        help="hold this coordination.k8s.io Lease (in the AlertConfig's namespace) to run; replicas without it "
        "stand by and forward POST /v1/events to the holder. Default: no election (one replica)",
    )
    p.add_argument(
        "--lease-duration", type=float, default=15.0, help="seconds a Lease stays valid without renewal. Default 15"
    )
    p.set_defaults(func=run)
