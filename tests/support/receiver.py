"""A recording HTTP receiver on loopback (webhook/Slack/... endpoints in tests).

``receiver`` is a fixture: import it into a suite's conftest (``from support.receiver import receiver``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


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
    #: called with each request as it arrives, and with each accepted one just before the answer goes out
    on_request: Callable[[Hit], None] | None = None
    on_accept: Callable[[Hit], None] | None = None

    async def handler(self, request: web.Request) -> web.Response:
        raw = await request.read()
        hit = Hit(request.method, request.path, request.query_string, dict(request.headers), raw)
        self.hits.append(hit)
        if self.on_request is not None:
            self.on_request(hit)
        status, delay = self.plan.pop(0) if self.plan else self.default
        if delay:
            await asyncio.sleep(delay)
        if 200 <= status < 300:
            self.accepted.append(hit)
            if self.on_accept is not None:
                self.on_accept(hit)
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


class ReceiverServer:
    """A ``Receiver`` on a port of its own that can go away and come back: ``stop()`` closes the
    listening socket (connections are refused), ``start()`` listens on the same port again."""

    def __init__(self, receiver: Receiver | None = None, port: int = 0) -> None:
        self.receiver = receiver or Receiver()
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.receiver.handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.receiver.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
