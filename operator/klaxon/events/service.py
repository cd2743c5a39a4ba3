"""``EventService``: one AlertConfig's live event rules, from ``POST /v1/events`` to notifications.

The front door (``http.Ingress``) queues accepted events; one worker drains the queue: each batch
in timestamp order, each event through the ``EventPipeline`` of every rule whose matcher takes it
(``RuleIndex`` narrows the candidates), alert entries (``entries.RuleEntries``), counters per rule
and key (``metrics``), and notifications handed to the notifier. Entries go to AlertRule status
through ``write_status``; grouping, cooldown and entries survive restarts in ``state``.
``set_config`` follows AlertConfig edits live.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.notify.model import Notification

from . import state
from .entries import RuleEntries, records_for
from .http import MAX_BODY_BYTES, Ingress, SeenIds, TokenSource
from .match import EventMatcher, RuleIndex
from .metrics import EventMetrics
from .model import EventIn
from .pipeline import EventPipeline, EventResult

log = logging.getLogger("klaxon.events")

#: Python's default (700 allocations between young collections) makes the collector run every
#: few events at ingestion rates and its full passes stall the loop: the p99 of POST latency
#: fell from 53 ms to 21 ms with this (bench/events.py, bench/README.md). Memory is unchanged.
GC_THRESHOLDS = (10_000, 10, 10)
#: Matching yields to the event loop when a batch has run this long (typical batches take ~3 ms).
YIELD_AFTER_S = 0.005


def tune_gc() -> None:
    """For an evaluator that ingests events: objects alive now (rules, models, modules) leave the
    collector's view (``gc.freeze``) and young collections run less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class EventNotifier(Protocol):
    """What the service hands notifications to (``klaxon.notify.Notifier`` fits)."""

    async def handle(self, n: Notification) -> Any: ...


WriteStatus = Callable[[str, str, dict[str, Any]], Awaitable[None]]


@dataclass
class EventRule:
    """One event rule as the service holds it: its pipeline (grouping, cooldown) and entries."""

    namespace: str
    name: str
    spec: AlertRuleSpec
    pipeline: EventPipeline
    entries: RuleEntries
    annotations: Mapping[str, str]

    @property
    def matcher(self) -> EventMatcher:
        return self.pipeline.matcher


class EventService:
    """One AlertConfig's event ingestion and matching (see the module docstring)."""

    def __init__(
        self,
        config: AlertConfigSpec,
        token: TokenSource,
        *,
        notifier: EventNotifier | None = None,
        write_status: WriteStatus | None = None,
        registry: CollectorRegistry | None = None,
        status_interval_s: float = 5.0,
        seen: SeenIds | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        token_ttl_s: float = 60.0,
        state_path: Path | None = None,
        save_interval_s: float = 5.0,
    ) -> None:
        self.config = config
        self.notifier, self.write_status = notifier, write_status
        self.metrics = EventMetrics(registry or CollectorRegistry())
        self.ingress = Ingress(self, token, seen=seen, max_body_bytes=max_body_bytes, token_ttl_s=token_ttl_s)
        self.status_interval_s = status_interval_s
        self.rules: dict[tuple[str, str], EventRule] = {}
        self.index: RuleIndex[EventRule] = RuleIndex(())
        self.queue: asyncio.Queue[list[EventIn]] = asyncio.Queue()
        self.pending = 0
        self.processed = 0
        self.problems: dict[tuple[str, str], list[str]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._rate = 0.0  # events per second drained, for Retry-After
        #: extra loops run while the service runs (e.g. the evaluator's rule refresh)
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        #: grouping, cooldown and entries survive restarts here (``state``); None: memory only
        self.state_path, self.save_interval_s = state_path, save_interval_s
        self._saved_state = state.load(state_path) if state_path is not None else {}
        self._unsaved = False
        #: rules were listed completely at least once: saved state of rules not among them is
        #: dropped at the next save (until then it is kept, e.g. when stopping before the first list)
        self.synced = False

    # -- configuration and rules -------------------------------------------------------------
    def set_config(self, config: AlertConfigSpec) -> None:
        """Apply a changed AlertConfig spec live, to every rule, from the next event on.

        Silences, ``silencedUntil``, mute time intervals and default channels take effect at once;
        a changed ``grouping`` restarts grouping (open entries stay open and close after the new
        window); ``entries`` settings apply to records seen from now on; ``events.maxBatch`` and
        ``events.queueSize`` to the next request, and a changed ``events.token`` is read afresh.
        Cooldown windows and acknowledgements are kept.
        """
        old, self.config = self.config, config
        if config.events.token != old.events.token:
            self.ingress.forget_token()
        for rule in self.rules.values():
            if rule.pipeline.set_config(config):
                rule.entries.window_s = rule.pipeline.window_s
            rule.entries.settings = config.entries
        if self.rules:
            self._unsaved = True  # the saved grouping is fingerprinted with the config's

    def set_rule(
        self, namespace: str, name: str, spec: AlertRuleSpec, annotations: Mapping[str, str] | None = None
    ) -> None:
        """Add or update an event rule (metric rules are ignored). Same spec: state is kept, and
        new ``klaxon.dev/entries`` records apply (ack, action, root cause)."""
        key = (namespace, name)
        if spec.events is None:
            self.remove_rule(namespace, name)
            return
        annotations = dict(annotations or {})
        old = self.rules.get(key)
        if old is None or old.spec != spec or old.pipeline.config is not self.config:
            rule = self._new_rule(namespace, name, spec, annotations, old)
            self.rules[key] = rule
            self.index = RuleIndex(self.rules.values())
        else:
            rule = old
            rule.annotations = annotations
        self._apply_records(rule)

    def _new_rule(
        self, namespace: str, name: str, spec: AlertRuleSpec, annotations: Mapping[str, str], old: EventRule | None
    ) -> EventRule:
        pipe = EventPipeline(namespace, name, spec, self.config)
        entries = RuleEntries(pipe.window_s, self.config.entries)
        if old is not None:  # keep what people did and what is open; grouping restarts
            entries.open, entries._seen = old.entries.open, old.entries._seen
            pipe.acked = old.pipeline.acked
        else:
            saved = self._saved_state.pop(f"{namespace}/{name}", None)
            if saved is not None:
                self._restore(namespace, name, pipe, entries, saved)
        return EventRule(namespace, name, spec, pipe, entries, annotations)

    @staticmethod
    def _restore(namespace: str, name: str, pipe: EventPipeline, entries: RuleEntries, saved: dict[str, Any]) -> None:
        try:
            whole = state.restore_rule(pipe, entries, saved)
            log.info("AlertRule %s/%s: event state restored (%s)", namespace, name,
                     "entries, grouping and cooldown" if whole else "entries; the rule changed")
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("AlertRule %s/%s: saved event state unusable (%s)", namespace, name, exc)

    def remove_rule(self, namespace: str, name: str) -> None:
        if self.rules.pop((namespace, name), None) is not None:
            self.index = RuleIndex(self.rules.values())

    def _apply_records(self, rule: EventRule) -> None:
        records, problems = records_for(rule.annotations)
        acked, more = rule.entries.apply(records)
        rule.pipeline.acked |= acked
        if problems or more:
            self.problems[(rule.namespace, rule.name)] = problems + more
            for p in problems + more:
                log.warning("AlertRule %s/%s: %s", rule.namespace, rule.name, p)
        if acked or records:
            self._dirty.add((rule.namespace, rule.name))
            self._unsaved = True

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name="klaxon-events-worker")]
        if self.write_status is not None and self.status_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._status_loop(), name="klaxon-events-status"))
        if self.state_path is not None:
            self._tasks.append(asyncio.create_task(self._save_loop(), name="klaxon-events-save"))
        self._tasks.extend(asyncio.create_task(loop(), name="klaxon-events-background") for loop in self.background)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("event task failed")
        self._tasks = []
        await self.flush_status()
        self.save_state()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Until every accepted event was matched (tests, benchmarks)."""
        async with asyncio.timeout(timeout_s):
            await self.queue.join()

    # -- the queue (``http.Backlog``) --------------------------------------------------------
    async def post_events(self, request: web.Request) -> web.Response:
        return await self.ingress.post(request)

    def retry_after(self, excess: int) -> int:
        """Seconds until ``excess`` more events would fit, at the rate the queue drains (1..60)."""
        return max(1, min(60, math.ceil(excess / max(self._rate, 1.0))))

    def enqueue(self, events: list[EventIn]) -> None:
        self.pending += len(events)
        self.metrics.queue.set(self.pending)
        self.queue.put_nowait(events)

    # -- matching --------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            batch = await self.queue.get()
            started = time.perf_counter()
            try:
                await self.process(batch)
            except Exception:
                log.exception("matching a batch of %d events failed", len(batch))
            finally:
                self.pending -= len(batch)
                self.processed += len(batch)
                self.metrics.queue.set(self.pending)
                took = time.perf_counter() - started
                if took > 0:
                    self._rate = 0.8 * self._rate + 0.2 * (len(batch) / took) if self._rate else len(batch) / took
                self.queue.task_done()
            # queue.get() does not suspend while batches wait: yield, so POSTs are answered between
            # batches rather than after the whole backlog. (Yielding inside a batch let ingestion run
            # far ahead of matching: more live objects, more collector time, lower throughput.)
            await asyncio.sleep(0)

    async def process(self, batch: list[EventIn]) -> list[tuple[EventRule, EventResult]]:
        """Match a batch (in timestamp order) against the rules; notify; update entries.

        Counters are added up per batch and exported once per (rule, key, outcome).
        """
        out: list[tuple[EventRule, EventResult]] = []
        touched: dict[int, EventRule] = {}
        tally: dict[tuple[str, str, str, str], int] = {}
        index = self.index
        clock = time.perf_counter
        since = clock()
        for ev in sorted(batch, key=lambda e: e.timestamp):
            if clock() - since > YIELD_AFTER_S:  # a heavy batch (many matching rules) is not one long block
                await asyncio.sleep(0)
                since = clock()
            at, fields = ev.timestamp, None
            for rule in index.candidates(ev):
                matched, held = rule.pipeline.matcher.match(ev, at, explain=False)
                if not matched:
                    continue
                if fields is None:
                    fields = ev.fields()
                r = rule.pipeline.take(fields, ev.id, at, held)
                ck = (
                    rule.namespace,
                    rule.name,
                    r.dedup_key or "",
                    r.suppressed_by or ("notified" if r.would_notify else ""),
                )
                tally[ck] = tally.get(ck, 0) + 1
                rule.entries.observe(r)
                touched[id(rule)] = rule
                out.append((rule, r))
                if r.notification is not None:
                    await self._notify(r.notification)
        for (ns, name, key, outcome), n in tally.items():
            self.metrics.count_outcome(ns, name, key, outcome, n)
        if touched:
            self._unsaved = True
        for rule in touched.values():
            rule.entries.sweep()
            self.metrics.entries_open.labels(rule.namespace, rule.name).set(len(rule.entries.open))
            self._dirty.add((rule.namespace, rule.name))
        return out

    async def _notify(self, n: Notification) -> None:
        if self.notifier is None:
            log.info("event notification for %s/%s key %s (no notifier)", n.rule_namespace, n.rule_name, n.dedup_key)
            return
        try:
            await self.notifier.handle(n)
        except Exception:
            log.exception("notifier failed for %s/%s key %s", n.rule_namespace, n.rule_name, n.dedup_key)

    def sweep(self, now: datetime) -> None:
        """Close entries quiet for a full window before ``now`` (the evaluator calls this on a clock)."""
        for rule in self.rules.values():
            rule.pipeline.compact()  # memory stays bounded by the keys active within a window
            if rule.entries.sweep(now):
                self._dirty.add((rule.namespace, rule.name))
                self._unsaved = True

    def entries_status(self, namespace: str, name: str) -> dict[str, Any]:
        return self.rules[(namespace, name)].entries.status()

    # -- state on disk ---------------------------------------------------------------------
    def _encoded(self, rule: EventRule) -> str:
        rule.pipeline.compact()
        saved = state.dump_rule(rule.pipeline, rule.entries)
        return state.encode_rule(f"{rule.namespace}/{rule.name}", saved)

    def _unrestored(self) -> list[str]:
        """Saved state of rules not loaded yet, carried over until the rules were listed once."""
        return [] if self.synced else [state.encode_rule(k, v) for k, v in self._saved_state.items()]

    def save_state(self) -> None:
        """Write every rule's grouping, cooldown and entries (no-op without a state path)."""
        if self.state_path is None:
            return
        try:
            state.write(self.state_path, self._unrestored() + [self._encoded(r) for r in self.rules.values()])
            self._unsaved = False
        except OSError as exc:
            log.warning("event state not saved to %s: %s", self.state_path, exc)

    async def save_state_async(self) -> None:
        """:meth:`save_state` without holding the loop: one rule encoded per step, the file written
        in a thread (a few hundred KiB take ~40 ms to encode in one go)."""
        if self.state_path is None:
            return
        self._unsaved = False  # changes from here on are saved next time
        encoded = self._unrestored()
        for r in list(self.rules.values()):
            encoded.append(self._encoded(r))
            await asyncio.sleep(0)
        try:
            await asyncio.to_thread(state.write, self.state_path, encoded)
        except OSError as exc:
            self._unsaved = True
            log.warning("event state not saved to %s: %s", self.state_path, exc)

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.save_interval_s)
            if self._unsaved:
                await self.save_state_async()

    # -- status ----------------------------------------------------------------------------
    async def flush_status(self) -> None:
        """Write ``entries``/``entriesCount`` of every changed rule (a failed write is retried)."""
        if self.write_status is None:
            self._dirty.clear()
            return
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            rule = self.rules.get(key)
            if rule is None:
                continue
            try:
                await self.write_status(key[0], key[1], rule.entries.status())
            except Exception as exc:
                log.warning("entries status write for %s/%s failed: %s", key[0], key[1], exc)
                self._dirty.add(key)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval_s)
            await self.flush_status()


def sync_rules(service: EventService, items: Iterable[Mapping[str, Any]], complete: bool = True) -> None:
    """Make the service's rules the valid event rules among ``items`` (AlertRule objects).

    ``complete``: ``items`` are all the rules (a namespace that could not be listed makes it False:
    nothing is removed then, and saved state of rules not seen yet is kept).
    """
    from klaxon.api.validation import parse_spec

    present: set[tuple[str, str]] = set()
    for obj in items:
        meta = obj.get("metadata") or {}
        spec, problems = parse_spec("AlertRule", obj.get("spec"))
        if problems or not isinstance(spec, AlertRuleSpec) or spec.events is None:
            continue
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        present.add(key)
        service.set_rule(key[0], key[1], spec, meta.get("annotations") or {})
    if not complete:
        return
    for key in set(service.rules) - present:
        service.remove_rule(*key)
    service.synced = True  # from now on, saved state of rules not listed is gone for good
