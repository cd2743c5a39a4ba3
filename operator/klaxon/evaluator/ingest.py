"""Live event ingestion: ``POST /v1/events`` → bounded queue → the event pipeline → notifier.

``EventService`` is one AlertConfig's ingestion: bearer-token check (``hmac.compare_digest``,
the token is never logged), strict validation of every event (``EventIn``; all errors are
returned as ``{"errors": [{"index", "field", "problem", "allowed"}]}`` with 400 and nothing of
the request is accepted), 413 over ``maxBatch`` events or the byte limit, 429 with Retry-After
when the queue cannot take the whole request, and idempotency by event id (a bounded LRU with
a TTL: a retried batch is answered 202 and its already-seen ids are counted as duplicates).

One worker drains the queue: each batch in timestamp order, each event through the
``EventPipeline`` of every rule that can match it (``RuleIndex``: a pre-filter on cameras,
zones or object types; matching itself is ``klaxon.notify.events.match_event``, the very code of
``klaxon test-rule``), alert entries (``entries.RuleEntries``), counters per rule and key, and
notifications handed to the notifier. The schema is documented in ``docs/events.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.api.refs import config_key, granted_namespaces, rules_scope
from klaxon.kube.client import FAILURES, KubeClient, Ref
from klaxon.notify.events import EventPipeline, EventResult
from klaxon.notify.model import Notification, SecretResolver

from . import event_state
from .entries import RuleEntries, records_for

log = logging.getLogger("klaxon.evaluator.events")

EVENTS_PATH = "/v1/events"
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ERRORS = 100
MAX_KEYS_PER_RULE = 1000  # metric label values per rule; more keys are counted under OTHER_KEY
OTHER_KEY = "__other__"

Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TypeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
LabelValue = Annotated[str, StringConstraints(max_length=256)]


class EventIn(BaseModel):
    """One detection event (docs/events.md). Strict: no type coercion, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: Name = Field(description="unique per event; a retried event with a seen id is a duplicate")
    timestamp: AwareDatetime = Field(description="when it happened, RFC 3339 with an offset")
    camera_id: Name | None = None
    zone_ids: list[Name] = Field(default_factory=list, max_length=64)
    object_types: list[TypeName] = Field(default_factory=list, max_length=64)
    risk_score: Annotated[float, Field(ge=0, le=100)] | None = None
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=32)

    @field_validator("labels")
    @classmethod
    def _no_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(v) & RESERVED)
        if clash:
            raise ValueError(f"label names {', '.join(clash)} are reserved for the event's own fields")
        return v

    def fields(self) -> dict[str, Any]:
        """The flat field map the pipeline, dedup-key templates and silences see."""
        out: dict[str, Any] = dict(self.labels)
        out.update(
            id=self.id,
            timestamp=self.timestamp,
            camera_id=self.camera_id,
            zone_ids=self.zone_ids,
            object_types=self.object_types,
            risk_score=self.risk_score,
            confidence=self.confidence,
        )
        return out


RESERVED = frozenset(EventIn.model_fields) | {
    # the aliases match_event / event_time also read: a label must not stand in for an event field
    "cameraId",
    "camera",
    "zoneIds",
    "zoneId",
    "zone",
    "objectTypes",
    "objectType",
    "risk",
    "min_confidence",
    "started_at",
    "startedAt",
    "created_at",
    "object_type",
    "zone_id",
    "rule",
    "alertname",
    "namespace",
    "severity",
    "event_id",
    "time",
}

ALLOWED: dict[str, str] = {
    "id": "string of 1..128 characters",
    "timestamp": "RFC 3339 date-time with an offset, e.g. 2026-11-22T22:15:00Z",
    "camera_id": "string of 1..128 characters, or null",
    "zone_ids": "list of at most 64 strings of 1..128 characters",
    "object_types": "list of at most 64 strings of 1..64 characters",
    "risk_score": "number 0..100, or null",
    "confidence": "number 0..1, or null",
    "labels": "object of at most 32 string values; names [A-Za-z_][A-Za-z0-9_]*, not an event field",
}
_FIELDS = ", ".join(EventIn.model_fields)

_ONE = TypeAdapter(EventIn)
_MANY = TypeAdapter(list[EventIn])


def validation_errors(exc: ValidationError, batch: bool) -> list[dict[str, Any]]:
    """pydantic's errors as ``{index, field, problem, allowed}`` (at most MAX_ERRORS)."""
    out: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False)[:MAX_ERRORS]:
        loc = list(err.get("loc", ()))
        index: int | None = 0
        if batch:
            first = loc.pop(0) if loc and isinstance(loc[0], int) else None
            index = first if isinstance(first, int) else None
        field = str(loc[0]) if loc else None
        problem = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            problem = "unknown field; free labels go under 'labels'"
            allowed = _FIELDS
        elif field is None:
            allowed = "a JSON object (one event) or a JSON array of objects (a batch)"
        else:
            allowed = ALLOWED.get(field, _FIELDS)
        if len(loc) > 1:
            problem = f"{'.'.join(str(x) for x in loc[1:])}: {problem}"
        out.append({"index": index, "field": field, "problem": problem, "allowed": allowed})
    return out


def parse_body(body: bytes) -> tuple[list[EventIn], list[dict[str, Any]]]:
    """The events of a request body (an object or an array), or the per-event errors."""
    head = body.lstrip()[:1]
    if head not in (b"[", b"{"):
        return [], [
            {
                "index": None,
                "field": None,
                "problem": "body must be a JSON object or array",
                "allowed": "a JSON object (one event) or a JSON array of objects (a batch)",
            }
        ]
    batch = head == b"["
    try:
        events = _MANY.validate_json(body) if batch else [_ONE.validate_json(body)]
    except ValidationError as exc:
        return [], validation_errors(exc, batch)
    return events, []


class SeenIds:
    """Event ids seen in the last ``ttl_s`` seconds, at most ``max_size`` (oldest forgotten first)."""

    def __init__(self, max_size: int = 200_000, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self.max_size, self.ttl_s, self.clock = max_size, ttl_s, clock
        self._ids: OrderedDict[str, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        ids = self._ids
        while ids:
            _, at = next(iter(ids.items()))
            if now - at < self.ttl_s and len(ids) <= self.max_size:
                break
            ids.popitem(last=False)

    def __contains__(self, event_id: str) -> bool:
        at = self._ids.get(event_id)
        return at is not None and self.clock() - at < self.ttl_s

    def add_all(self, ids: Iterable[str]) -> None:
        now = self.clock()
        for i in ids:
            self._ids[i] = now
            self._ids.move_to_end(i)
        self._expire(now)

    def __len__(self) -> int:
        return len(self._ids)


class EventNotifier(Protocol):
    """What the service hands notifications to (``klaxon.notify.Notifier`` fits)."""

    async def handle(self, n: Notification) -> Any: ...


WriteStatus = Callable[[str, str, dict[str, Any]], Awaitable[None]]
TokenSource = Callable[[], Awaitable[str]]


@dataclass
class _Rule:
    namespace: str
    name: str
    spec: AlertRuleSpec
    pipeline: EventPipeline
    entries: RuleEntries
    annotations: Mapping[str, str]

    def __post_init__(self) -> None:
        flt = self.spec.events
        assert flt is not None
        self.risk, self.conf = flt.risk_threshold, flt.min_confidence
        self.cameras, self.zones, self.types = set(flt.cameras), set(flt.zones), set(flt.object_types)

    def could_match(self, ev: EventIn) -> bool:
        """The filters other than the schedule, on the typed event: a cheap necessary condition
        (``match_event`` still decides, and gives the same answer on these fields)."""
        if self.risk is not None and (ev.risk_score is None or ev.risk_score < self.risk):
            return False
        if self.conf is not None and (ev.confidence is None or ev.confidence < self.conf):
            return False
        if self.cameras and ev.camera_id not in self.cameras:
            return False
        if self.types and self.types.isdisjoint(ev.object_types):
            return False
        return not (self.zones and self.zones.isdisjoint(ev.zone_ids))


class RuleIndex:
    """Which rules can match an event: rules are filed under their cameras, else zones, else object
    types, else as wildcards. Only a pre-filter: every candidate still runs ``match_event``."""

    def __init__(self, rules: Iterable[_Rule]) -> None:
        self.by_camera: dict[str, list[_Rule]] = {}
        self.by_zone: dict[str, list[_Rule]] = {}
        self.by_type: dict[str, list[_Rule]] = {}
        self.wild: list[_Rule] = []
        for r in rules:
            flt = r.spec.events
            assert flt is not None
            if flt.cameras:
                for c in flt.cameras:
                    self.by_camera.setdefault(c, []).append(r)
            elif flt.zones:
                for z in flt.zones:
                    self.by_zone.setdefault(z, []).append(r)
            elif flt.object_types:
                for t in flt.object_types:
                    self.by_type.setdefault(t, []).append(r)
            else:
                self.wild.append(r)

    def candidates(self, ev: EventIn) -> list[_Rule]:
        found: dict[int, _Rule] = {}
        if ev.camera_id is not None:
            for r in self.by_camera.get(ev.camera_id, ()):
                found[id(r)] = r
        for z in ev.zone_ids:
            for r in self.by_zone.get(z, ()):
                found[id(r)] = r
        for t in ev.object_types:
            for r in self.by_type.get(t, ()):
                found[id(r)] = r
        if not found:
            return self.wild
        for r in self.wild:
            found[id(r)] = r
        return list(found.values())


class EventMetrics:
    """Counters for dashboards: ingestion, and per rule and key matches / notifications / suppressions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter("klaxon_events_requests", "POST /v1/events by HTTP code.", ["code"], registry=r)
        self.events = Counter(
            "klaxon_events_received",
            "Events received by outcome (accepted, duplicate, rejected).",
            ["outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "klaxon_events_ingest_seconds",
            "Time to answer POST /v1/events.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.queue = Gauge("klaxon_events_queue_events", "Events waiting to be matched.", registry=r)
        labels = ["namespace", "rule", "key"]
        self.matches = Counter("klaxon_event_rule_matches", "Events a rule matched, per dedup key.", labels, registry=r)
        self.notified = Counter(
            "klaxon_event_rule_notifications", "Notifications per rule and dedup key.", labels, registry=r
        )
        self.suppressed = Counter(
            "klaxon_event_rule_suppressed",
            "Matches not notified, per rule, key and reason.",
            [*labels, "reason"],
            registry=r,
        )
        self.entries_open = Gauge(
            "klaxon_event_rule_entries_open", "Open alert entries per rule.", ["namespace", "rule"], registry=r
        )
        self._children: dict[tuple[str, ...], Any] = {}
        self._keys: dict[tuple[str, str], set[str]] = {}

    def _key(self, ns: str, rule: str, key: str) -> str:
        keys = self._keys.setdefault((ns, rule), set())
        if key in keys:
            return key
        if len(keys) >= MAX_KEYS_PER_RULE:
            return OTHER_KEY
        keys.add(key)
        return key

    def count_outcome(self, ns: str, rule: str, dedup_key: str, outcome: str, n: int = 1) -> None:
        """``n`` matches of one rule and key with one outcome: a SuppressedBy reason, "notified" or ""."""
        key = self._key(ns, rule, dedup_key)
        ck = (ns, rule, key, outcome)
        children = self._children.get(ck)
        if children is None:
            children = [self.matches.labels(ns, rule, key)]
            if outcome == "notified":
                children.append(self.notified.labels(ns, rule, key))
            elif outcome:
                children.append(self.suppressed.labels(ns, rule, key, outcome))
            self._children[ck] = children
        for c in children:
            c.inc(n)


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
        self._token_source, self.token_ttl_s = token, token_ttl_s
        self._token: tuple[bytes, float] | None = None
        self.notifier, self.write_status = notifier, write_status
        self.metrics = EventMetrics(registry or CollectorRegistry())
        self.status_interval_s = status_interval_s
        self.seen = seen or SeenIds()
        self.max_body_bytes = max_body_bytes
        self.rules: dict[tuple[str, str], _Rule] = {}
        self.index = RuleIndex(())
        self.queue: asyncio.Queue[list[EventIn]] = asyncio.Queue()
        self.pending = 0
        self.processed = 0
        self.problems: dict[tuple[str, str], list[str]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._rate = 0.0  # events per second drained, for Retry-After
        #: extra loops run while the service runs (e.g. the evaluator's rule refresh)
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        #: grouping, cooldown and entries survive restarts here (``event_state``); None: memory only
        self.state_path, self.save_interval_s = state_path, save_interval_s
        self._saved_state = event_state.load(state_path) if state_path is not None else {}
        self._unsaved = False
        #: rules were listed completely at least once: saved state of rules not among them is
        #: dropped at the next save (until then it is kept, e.g. when stopping before the first list)
        self.synced = False

    # -- rules ---------------------------------------------------------------------------
    def set_config(self, config: AlertConfigSpec) -> None:
        """A changed AlertConfig: grouping, silences and entry settings apply to rebuilt pipelines."""
        self.config = config
        for r in list(self.rules.values()):
            self.set_rule(r.namespace, r.name, r.spec, r.annotations)

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
            pipe = EventPipeline(namespace, name, spec, self.config)
            entries = RuleEntries(pipe.window_s, self.config.entries)
            if old is not None:  # keep what people did and what is open; grouping restarts
                entries.open, entries._seen = old.entries.open, old.entries._seen
                pipe.acked = old.pipeline.acked
            saved = self._saved_state.pop(f"{namespace}/{name}", None) if old is None else None
            if saved is not None:
                try:
                    whole = event_state.restore_rule(pipe, entries, saved)
                    log.info("AlertRule %s/%s: event state restored (%s)", namespace, name,
                             "entries, grouping and cooldown" if whole else "entries; the rule changed")
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("AlertRule %s/%s: saved event state unusable (%s)", namespace, name, exc)
            rule = _Rule(namespace, name, spec, pipe, entries, annotations)
            self.rules[key] = rule
            self.index = RuleIndex(self.rules.values())
        else:
            rule = old
            rule.annotations = annotations
        self._apply_records(rule)

    def remove_rule(self, namespace: str, name: str) -> None:
        if self.rules.pop((namespace, name), None) is not None:
            self.index = RuleIndex(self.rules.values())

    def _apply_records(self, rule: _Rule) -> None:
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

    # -- HTTP ------------------------------------------------------------------------------
    async def _expected_token(self) -> bytes:
        now = time.monotonic()
        if self._token is None or now - self._token[1] >= self.token_ttl_s:
            self._token = ((await self._token_source()).encode(), now)
        return self._token[0]

    async def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        try:
            expected = await self._expected_token()
        except Exception as exc:  # fail closed, whatever went wrong
            log.error("event ingestion token unavailable (spec.events.token): %s", exc)
            return False
        return bool(expected) and hmac.compare_digest(given.strip().encode(), expected)

    def _answer(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
        self.metrics.requests.labels(str(status)).inc()
        return web.json_response(body, status=status, headers=headers)

    async def post_events(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            return await self._post(request)
        finally:
            self.metrics.latency.observe(time.perf_counter() - started)

    async def _post(self, request: web.Request) -> web.Response:
        if not await self._authorized(request):
            return self._answer(
                401,
                {"errors": [{"index": None, "field": None, "problem": "missing or wrong bearer token"}]},
                {"WWW-Authenticate": 'Bearer realm="klaxon-events"'},
            )
        limit = self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._too_large(f"body of {request.content_length} bytes exceeds {limit}")
        body = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > limit:
                return self._too_large(f"body exceeds {limit} bytes")
        events, errors = parse_body(bytes(body))
        if errors:
            self.metrics.events.labels("rejected").inc(max(1, len({e["index"] for e in errors})))
            return self._answer(400, {"errors": errors})
        max_batch = self.config.events.max_batch
        if len(events) > max_batch:
            return self._too_large(f"batch of {len(events)} events exceeds maxBatch {max_batch}")
        fresh: list[EventIn] = []
        ids: set[str] = set()
        for ev in events:
            if ev.id in ids or ev.id in self.seen:
                continue
            ids.add(ev.id)
            fresh.append(ev)
        duplicates = len(events) - len(fresh)
        capacity = self.config.events.queue_size
        if fresh and self.pending + len(fresh) > capacity:
            retry = max(1, min(60, math.ceil((self.pending + len(fresh) - capacity) / max(self._rate, 1.0))))
            return self._answer(
                429,
                {
                    "errors": [
                        {
                            "index": None,
                            "field": None,
                            "problem": f"queue full ({self.pending} of {capacity} events waiting)",
                        }
                    ]
                },
                {"Retry-After": str(retry)},
            )
        if fresh:
            self.seen.add_all(ids)
            self.pending += len(fresh)
            self.metrics.queue.set(self.pending)
            self.queue.put_nowait(fresh)
            self.metrics.events.labels("accepted").inc(len(fresh))
        if duplicates:
            self.metrics.events.labels("duplicate").inc(duplicates)
        return self._answer(202, {"accepted": len(fresh), "duplicates": duplicates})

    def _too_large(self, problem: str) -> web.Response:
        return self._answer(
            413,
            {
                "errors": [
                    {
                        "index": None,
                        "field": None,
                        "problem": problem,
                        "allowed": f"at most {self.config.events.max_batch} events and {self.max_body_bytes} bytes",
                    }
                ]
            },
        )

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

    async def process(self, batch: list[EventIn]) -> list[tuple[_Rule, EventResult]]:
        """Match a batch (in timestamp order) against the rules; notify; update entries.

        Counters are added up per batch and exported once per (rule, key, outcome).
        """
        out: list[tuple[_Rule, EventResult]] = []
        touched: dict[int, _Rule] = {}
        tally: dict[tuple[str, str, str, str], int] = {}
        index = self.index
        clock = time.perf_counter
        since = clock()
        for ev in sorted(batch, key=lambda e: e.timestamp):
            if clock() - since > YIELD_AFTER_S:  # a heavy batch (many matching rules) is not one long block
                await asyncio.sleep(0)
                since = clock()
            cands = [rule for rule in index.candidates(ev) if rule.could_match(ev)]
            if not cands:
                continue
            fields = ev.fields()
            for rule in cands:
                r = rule.pipeline.process(fields)
                if not r.matched:
                    continue
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
    def _encoded(self, rule: _Rule) -> str:
        rule.pipeline.compact()
        state = event_state.dump_rule(rule.pipeline, rule.entries)
        return event_state.encode_rule(f"{rule.namespace}/{rule.name}", state)

    def _unrestored(self) -> list[str]:
        """Saved state of rules not loaded yet, carried over until the rules were listed once."""
        return [] if self.synced else [event_state.encode_rule(k, v) for k, v in self._saved_state.items()]

    def save_state(self) -> None:
        """Write every rule's grouping, cooldown and entries (no-op without a state path)."""
        if self.state_path is None:
            return
        try:
            event_state.write(self.state_path, self._unrestored() + [self._encoded(r) for r in self.rules.values()])
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
            await asyncio.to_thread(event_state.write, self.state_path, encoded)
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


def mount_event_routes(app: web.Application, service: EventService) -> None:
    """Serve ``POST /v1/events`` on ``app`` and run the service with it (start/stop on app signals)."""

    async def on_startup(_: web.Application) -> None:
        await service.start()

    async def on_cleanup(_: web.Application) -> None:
        await service.stop()

    app.router.add_post(EVENTS_PATH, service.post_events)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)


# -- wiring into `klaxon evaluator` (Kubernetes) --------------------------------------------


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


async def event_service_for(
    kube: KubeClient,
    config_namespace: str,
    config_name: str,
    config: AlertConfigSpec,
    registry: CollectorRegistry,
    *,
    notifier: EventNotifier | None = None,
    refresh_s: float = 10.0,
    state_dir: str | Path | None = None,
    secrets: SecretResolver | None = None,
) -> EventService | None:
    """The AlertConfig's event service for ``klaxon evaluator``, or None without ``spec.events.token``.

    The token is read from the Secret (in the AlertConfig's namespace) and re-read every minute;
    rules and their ``klaxon.dev/entries`` annotations are re-listed every ``refresh_s``, when
    entries quiet for a full window (wall clock) are closed too; entries go to AlertRule status.
    With ``state_dir``, grouping, cooldown and entries are kept there across restarts.
    """
    from datetime import UTC

    from klaxon.evaluator.connect import KubeSecretResolver

    reader = secrets or KubeSecretResolver(kube)
    selector = config.events.token
    if selector is None:
        log.info("AlertConfig %s/%s has no spec.events.token: POST /v1/events is off", config_namespace, config_name)
        return None

    async def token() -> str:
        return (await reader.get(config_namespace, selector.name, selector.key)).strip()

    async def write(namespace: str, name: str, status: dict[str, Any]) -> None:
        await kube.patch_status(Ref.klaxon("AlertRule", namespace, name), status)

    def ours(rule: Mapping[str, Any]) -> bool:
        meta = rule.get("metadata") or {}
        return config_key(str(meta.get("namespace", "")), rule.get("spec")) == (config_namespace, config_name)

    state_path = None
    if state_dir is not None:
        with contextlib.suppress(OSError):  # an unwritable state dir: each save says so, nothing crashes
            Path(state_dir).mkdir(parents=True, exist_ok=True)
        state_path = Path(state_dir) / event_state.STATE_FILE
    service = EventService(
        config, token, notifier=notifier, write_status=write, registry=registry, state_path=state_path
    )

    everywhere = "*" in config.allowed_namespaces
    last: dict[str, list[dict[str, Any]]] = {}  # per namespace: the rules last listed there

    async def refresh() -> None:
        while True:
            granted: list[str] = []
            if everywhere:  # '*': the namespaces the operator granted (those holding our rules)
                cfg_obj: Mapping[str, Any] | None = None
                try:
                    cfg_obj = await kube.get(Ref.klaxon("AlertConfig", config_namespace, config_name))
                except FAILURES as exc:
                    log.warning(
                        "reading AlertConfig %s/%s failed: %s", config_namespace, config_name, exc, exc_info=True
                    )
                if cfg_obj is not None:
                    granted = granted_namespaces(cfg_obj)
                else:  # unreadable or gone: the namespaces as they were
                    granted = [ns for ns in last if ns != config_namespace]
            scope = rules_scope(config_namespace, config.allowed_namespaces, granted)
            for gone in set(last) - set(scope):
                del last[gone]
            complete = True
            for ns in scope:
                try:
                    last[ns] = [r for r in await kube.list(Ref.klaxon("AlertRule", ns)) if ours(r)]
                except FAILURES as exc:  # keep what was there: an error is not a deletion
                    complete = False
                    log.warning("listing event rules in %s failed: %s", ns, exc, exc_info=True)
            if complete or last:
                sync_rules(service, [r for items in last.values() for r in items], complete=complete)
            service.sweep(datetime.now(UTC))
            await asyncio.sleep(refresh_s)

    service.background.append(refresh)
    tune_gc()
    return service
