"""Shared fixtures: a recording HTTP receiver on loopback, secrets, and a notifier factory."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from klaxon.api.channel import NotificationChannelSpec
from klaxon.notify import DictSecretResolver, MemoryStatusSink, Notification, Notifier, RetryPolicy

NS = "team-a"
SECRETS = {
    (NS, "creds"): {
        "hmac": "hmac-secret-value-7f3a9c",
        "token": "bearer-secret-token-19d2e4",
        "slack": "",  # filled per test with the receiver URL
        "routing": "pd-routing-key-secret-55aa",
        "genie": "opsgenie-api-key-secret-66bb",
        "smtp-user": "alerts-user",
        "smtp-pass": "smtp-password-secret-77cc",
    }
}


@dataclass
class Hit:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Receiver:
    """Records every request; ``plan`` holds (status, delay_s) answers, then 200s (or ``default``)."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    plan: list[tuple[int, float]] = field(default_factory=list)
    default: tuple[int, float] = (200, 0.0)
    accepted: list[Hit] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.Response:
        raw = await request.read()
        hit = Hit(request.method, request.path, request.query_string, dict(request.headers), raw)
        self.hits.append(hit)
        status, delay = self.plan.pop(0) if self.plan else self.default
        if delay:
            await asyncio.sleep(delay)
        if 200 <= status < 300:
            self.accepted.append(hit)
        return web.json_response({"status": "ok"}, status=status)

    def keys(self) -> list[str]:
        return [h.headers.get("Idempotency-Key", "") for h in self.accepted]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


@pytest.fixture
def secrets() -> DictSecretResolver:
    return DictSecretResolver({k: dict(v) for k, v in SECRETS.items()})


FAST_RETRY = RetryPolicy(base_s=0.02, factor=2.0, cap_s=0.2, max_attempts=6, jitter=0.5)


@pytest.fixture
async def make_notifier(
    tmp_path: Path, secrets: DictSecretResolver
) -> AsyncIterator[Callable[..., Awaitable[Notifier]]]:
    made: list[Notifier] = []

    async def make(sink: MemoryStatusSink | None = None, **kw: Any) -> Notifier:
        kw.setdefault("retry", FAST_RETRY)
        kw.setdefault("status_interval_s", 0.05)
        kw.setdefault("timeout_s", 2.0)
        n = Notifier(kw.pop("path", tmp_path / "outbox.sqlite"), secrets, sink or MemoryStatusSink(), **kw)
        await n.start()
        made.append(n)
        return n

    yield make
    for n in made:
        await n.stop(grace_s=1)


def channel(spec: dict[str, Any]) -> NotificationChannelSpec:
    spec.setdefault("rateLimit", {"perMinute": 100000})
    return NotificationChannelSpec.model_validate(spec)


def notification(i: int = 0, **kw: Any) -> Notification:
    values: dict[str, Any] = {
        "rule_namespace": NS,
        "rule_name": "api-latency",
        "dedup_key": f"api-latency:svc-{i}",
        "episode_id": f"ep-{i}",
        "state_from": "Pending",
        "state_to": "Firing",
        "time": datetime(2025, 1, 15, 14, 0, i % 60, tzinfo=UTC),
        "labels": {"service": f"svc-{i}"},
        "annotations": {"summary": "p99 latency above 500ms"},
        "level": "critical",
        "severity": "critical",
        "value": 0.75,
        "channels": ("hook",),
    }
    values.update(kw)
    return Notification(**values)
