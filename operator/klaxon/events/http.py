"""``POST /v1/events``: the front door of the event service (docs/events.md).

Bearer-token check (``hmac.compare_digest``; the token is never logged), strict validation of
every event (all errors come back as ``{"errors": [{"index", "field", "problem", "allowed"}]}``
with 400 and nothing of the request is accepted), 413 over ``maxBatch`` events or the byte limit,
429 with Retry-After when the queue cannot take the whole request, and idempotency by event id
(``SeenIds``: a retried batch is answered 202 and its already-seen ids count as duplicates).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from aiohttp import web

from klaxon.api.alertconfig import AlertConfigSpec

from .metrics import EventMetrics
from .model import EventIn, parse_body

log = logging.getLogger("klaxon.events")

EVENTS_PATH = "/v1/events"
MAX_BODY_BYTES = 8 * 1024 * 1024

TokenSource = Callable[[], Awaitable[str]]


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


class Backlog(Protocol):
    """What the front door hands accepted events to (``EventService``)."""

    @property
    def config(self) -> AlertConfigSpec: ...
    @property
    def metrics(self) -> EventMetrics: ...
    @property
    def pending(self) -> int: ...

    def retry_after(self, excess: int) -> int:
        """Seconds until ``excess`` more events would fit."""
        ...

    def enqueue(self, events: list[EventIn]) -> None: ...


def _errors(problem: str, **more: Any) -> dict[str, Any]:
    return {"errors": [{"index": None, "field": None, "problem": problem, **more}]}


class Ingress:
    """Answers ``POST /v1/events`` for one ``Backlog``; the token is read through ``token`` and
    cached for ``token_ttl_s``."""

    def __init__(
        self,
        backlog: Backlog,
        token: TokenSource,
        *,
        seen: SeenIds | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        token_ttl_s: float = 60.0,
    ) -> None:
        self.backlog = backlog
        self._token_source, self.token_ttl_s = token, token_ttl_s
        self._token: tuple[bytes, float] | None = None
        self.seen = seen or SeenIds()
        self.max_body_bytes = max_body_bytes

    def forget_token(self) -> None:
        """Read the token afresh on the next request (``spec.events.token`` changed)."""
        self._token = None

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
        self.backlog.metrics.requests.labels(str(status)).inc()
        return web.json_response(body, status=status, headers=headers)

    def _too_large(self, problem: str) -> web.Response:
        max_batch = self.backlog.config.events.max_batch
        allowed = f"at most {max_batch} events and {self.max_body_bytes} bytes"
        return self._answer(413, _errors(problem, allowed=allowed))

    async def post(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            return await self._post(request)
        finally:
            self.backlog.metrics.latency.observe(time.perf_counter() - started)

    async def _post(self, request: web.Request) -> web.Response:
        if not await self._authorized(request):
            return self._answer(
                401, _errors("missing or wrong bearer token"), {"WWW-Authenticate": 'Bearer realm="klaxon-events"'}
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
            self.backlog.metrics.events.labels("rejected").inc(max(1, len({e["index"] for e in errors})))
            return self._answer(400, {"errors": errors})
        max_batch = self.backlog.config.events.max_batch
        if len(events) > max_batch:
            return self._too_large(f"batch of {len(events)} events exceeds maxBatch {max_batch}")
        return self._accept(events)

    def _accept(self, events: list[EventIn]) -> web.Response:
        """Queue the events not seen before, all or none (429 when the queue cannot take them)."""
        backlog, metrics = self.backlog, self.backlog.metrics
        fresh: list[EventIn] = []
        ids: set[str] = set()
        for ev in events:
            if ev.id in ids or ev.id in self.seen:
                continue
            ids.add(ev.id)
            fresh.append(ev)
        duplicates = len(events) - len(fresh)
        capacity = backlog.config.events.queue_size
        if fresh and backlog.pending + len(fresh) > capacity:
            retry = backlog.retry_after(backlog.pending + len(fresh) - capacity)
            return self._answer(
                429,
                _errors(f"queue full ({backlog.pending} of {capacity} events waiting)"),
                {"Retry-After": str(retry)},
            )
        if fresh:
            self.seen.add_all(ids)
            backlog.enqueue(fresh)
            metrics.events.labels("accepted").inc(len(fresh))
        if duplicates:
            metrics.events.labels("duplicate").inc(duplicates)
        return self._answer(202, {"accepted": len(fresh), "duplicates": duplicates})


class Served(Protocol):
    """A service ``mount_event_routes`` serves: its POST handler and its lifecycle."""

    async def post_events(self, request: web.Request) -> web.Response: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def mount_event_routes(app: web.Application, service: Served) -> None:
    """Serve ``POST /v1/events`` on ``app`` and run the service with it (start/stop on app signals)."""

    async def on_startup(_: web.Application) -> None:
        await service.start()

    async def on_cleanup(_: web.Application) -> None:
        await service.stop()

    app.router.add_post(EVENTS_PATH, service.post_events)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
