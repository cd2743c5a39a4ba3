"""Helpers for the live-event tests and the benchmark: a running ingestion app on loopback,
a recording webhook receiver, and event builders."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.events.http import EVENTS_PATH, mount_event_routes
from klaxon.events.service import EventService

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-ingest-token-3b1f9e7d5c"


def load_example(name: str) -> tuple[list[tuple[str, AlertRuleSpec]], AlertConfigSpec | None]:
    """The AlertRules (name, spec) and the AlertConfig of an example file."""
    rules: list[tuple[str, AlertRuleSpec]] = []
    config = None
    for doc in yaml.safe_load_all((ROOT / "examples" / name).read_text()):
        if doc["kind"] == "AlertRule":
            rules.append((doc["metadata"]["name"], AlertRuleSpec.model_validate(doc["spec"])))
        elif doc["kind"] == "AlertConfig":
            config = AlertConfigSpec.model_validate(doc["spec"])
    return rules, config


def event(i: int | str, at: datetime, **kw: Any) -> dict[str, Any]:
    """A valid event; ``at`` must be aware."""
    ev: dict[str, Any] = {
        "id": str(i),
        "timestamp": at.isoformat(),
        "camera_id": "front_door",
        "object_types": ["person"],
        "risk_score": 65.0,
        "confidence": 0.9,
    }
    ev.update(kw)
    return ev


@dataclass
class Hook:
    """A webhook receiver: records JSON bodies."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        return web.json_response({"ok": True})


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Hook]:
    hook = Hook()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hook.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield hook
    finally:
        await runner.cleanup()


@dataclass
class Running:
    """An ingestion app on loopback and a client session for it."""

    service: EventService
    url: str
    session: aiohttp.ClientSession
    registry: CollectorRegistry

    async def post(self, body: Any, token: str | None = TOKEN, raw: bytes | None = None) -> tuple[int, Any, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.session.post(self.url + EVENTS_PATH, data=data, headers=headers) as resp:
            return resp.status, await resp.json(), resp.headers

    async def metrics(self) -> str:
        async with self.session.get(self.url + "/metrics") as resp:
            return await resp.text()

    async def settle(self) -> None:
        await self.service.drain()
        await asyncio.sleep(0)


@asynccontextmanager
async def running_service(service: EventService, registry: CollectorRegistry) -> AsyncIterator[Running]:
    """Serve ``service`` (POST /v1/events) and ``/metrics`` of ``registry`` on a free loopback port."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    mount_event_routes(app, service)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:
        try:
            yield Running(service, f"http://127.0.0.1:{port}", session, registry)
        finally:
            await runner.cleanup()


def make_service(config: AlertConfigSpec, **kw: Any) -> tuple[EventService, CollectorRegistry]:
    registry = CollectorRegistry()

    async def token() -> str:
        return TOKEN

    return EventService(config, token, registry=registry, **kw), registry


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
