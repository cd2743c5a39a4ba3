"""The evaluator's HTTP side: ``/metrics``, ``/healthz``, ``/readyz`` and ``POST /v1/events``.

A standby (it waits for its shard's Lease) is alive and ready and forwards events to the leader,
whose address it reads from the Lease (``LEADER_ADDRESS_ANNOTATION``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from klaxon.engine.types import STATES
from klaxon.evaluator.results import CycleResult
from klaxon.events.http import EVENTS_PATH, mount_event_routes
from klaxon.events.service import EventService

log = logging.getLogger("klaxon.evaluator")

_FORWARDED = ("Authorization", "Content-Type")


@dataclass
class EvaluatorMetrics:
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
        self.config_generation = Gauge(
            "klaxon_evaluator_config_generation",
            "metadata.generation of the AlertConfig whose spec is in use (it follows the AlertConfig live).",
            registry=r,
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


class CycleHealth:
    """Healthy while cycles keep finishing: the last one ended less than ``stale_s`` ago
    (on ``monotonic``, injected so that tests need not wait)."""

    def __init__(self, stale_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stale_s = stale_s
        self.monotonic = monotonic
        self.started = monotonic()
        self.last_cycle: float | None = None
        #: False while a standby replica waits for its shard's Lease (alive and ready all the same).
        self.leading = True

    def ok(self) -> bool:
        if not self.leading:
            return True  # a standby runs no cycles: alive and ready to take over is all it can be
        ref = self.last_cycle if self.last_cycle is not None else self.started
        return self.monotonic() - ref < self.stale_s

    def cycled(self) -> None:
        """A cycle finished now."""
        self.last_cycle = self.monotonic()

    def lead(self) -> None:
        """This replica took over: cycles start now (standby time does not count as stale)."""
        self.leading, self.started, self.last_cycle = True, self.monotonic(), None


async def serve_http(
    metrics: EvaluatorMetrics,
    health: CycleHealth,
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
    if events is not None:  # live event rules: POST /v1/events (klaxon.events)
        mount_event_routes(app, events)
    elif forward is not None:  # a standby: the leader takes events
        app.router.add_post(EVENTS_PATH, forward)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


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
        log.warning("forwarding events to the leader at %s failed: %s", leader, exc)
        return unavailable("the leader could not be reached")
