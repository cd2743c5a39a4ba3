"""KubeClient's retry classification against a real local HTTP server (aiohttp): which failures
are sent again (transport errors, 429, 5xx; for POST only what the server cannot have acted on),
which surface at once, and that every failure reaches the caller as a KubeError."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp import web
from kubernetes_asyncio import client as k8s

from klaxon.kube.client import KubeClient, KubeError, Ref, Retry

#: Fast, but with room for several attempts: 0.01 s doubling to 0.05 s within 1 s.
FAST = Retry(first=0.01, cap=0.05, budget=1.0)
CM = Ref("v1", "configmaps", "ns", "cm")
CM_BODY = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}}

Step = int | str  # a status to answer with, or "close": drop the connection without an answer


@dataclass
class Script:
    """What the server answers, one step per request; after the steps, 200 with ``CM_BODY``."""

    steps: list[Step] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    retry_after: str | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.method)
        step = self.steps.pop(0) if self.steps else 200
        if step == "close":
            assert request.transport is not None
            request.transport.abort()  # no status line at all, as when the API server is killed mid-request
            return web.Response()
        assert isinstance(step, int)
        if step >= 300:
            headers = {"Retry-After": self.retry_after} if self.retry_after and step == 429 else {}
            status = {"kind": "Status", "status": "Failure", "code": step, "message": f"scripted {step}"}
            return web.json_response(status, status=step, headers=headers)
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(json.dumps({"type": "ADDED", "object": CM_BODY}).encode() + b"\n")
            await resp.write_eof()
            return resp
        return web.json_response(CM_BODY, status=201 if request.method == "POST" else 200)


Connect = Callable[..., Awaitable[tuple[KubeClient, Script]]]


def _config(port: int) -> k8s.Configuration:
    conf = k8s.Configuration()
    conf.host = f"http://127.0.0.1:{port}"
    return conf


@pytest_asyncio.fixture()
async def server() -> AsyncIterator[Connect]:
    runners: list[web.AppRunner] = []
    clients: list[KubeClient] = []

    async def connect(*steps: Step, retry: Retry = FAST, retry_after: str | None = None) -> tuple[KubeClient, Script]:
        script = Script(list(steps), retry_after=retry_after)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", script.handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        client = KubeClient(k8s.ApiClient(configuration=_config(port)), retry=retry)
        clients.append(client)
        return client, script

    yield connect
    for client in clients:
        await client.close()
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_a_read_answered_5xx_or_429_is_sent_again_until_it_succeeds(server: Connect, status: int) -> None:
    client, script = await server(status, status)
    assert await client.get(CM) == CM_BODY
    assert script.seen == ["GET"] * 3


async def test_a_dropped_connection_is_sent_again_for_reads_and_merge_patches(server: Connect) -> None:
    client, script = await server("close", "close", "close")
    assert await client.get(CM) == CM_BODY
    assert await client.merge_patch(CM, {"data": {"a": "b"}}) == CM_BODY
    assert script.seen == ["GET", "GET", "GET", "GET", "PATCH"]


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_a_refusal_is_not_sent_again(server: Connect, status: int) -> None:
    client, script = await server(status)
    with pytest.raises(KubeError) as refused:
        await client.merge_patch(CM, {"data": {"a": "b"}})
    assert refused.value.status == status and not refused.value.transient
    assert f"scripted {status}" in refused.value.message
    assert script.seen == ["PATCH"]


@pytest.mark.parametrize("status", [429, 503])
async def test_a_create_the_server_did_not_act_on_is_sent_again(server: Connect, status: int) -> None:
    client, script = await server(status)
    assert await client.create(CM_BODY) == CM_BODY
    assert script.seen == ["POST", "POST"]


@pytest.mark.parametrize("step", [500, 504, "close"])
async def test_a_create_the_server_may_have_acted_on_is_not_sent_again(server: Connect, step: Step) -> None:
    """A second POST could create a second object (generateName) or answer 409 for our own."""
    client, script = await server(step)
    with pytest.raises(KubeError) as failed:
        await client.create(CM_BODY)
    assert failed.value.transient  # the caller may still decide to try again later
    assert script.seen == ["POST"]


async def test_a_failure_that_lasts_the_budget_is_raised_as_the_last_answer(server: Connect) -> None:
    client, script = await server(*[503] * 200, retry=Retry(first=0.01, cap=0.02, budget=0.3))
    with pytest.raises(KubeError) as failed:
        await client.get(CM)
    assert failed.value.status == 503 and "scripted 503" in failed.value.message and not failed.value.unreachable
    assert 5 <= len(script.seen) < 200


async def test_retry_after_of_a_429_is_honoured(server: Connect) -> None:
    """Asked for 1 s: with a budget of 0.5 s there is no time for a second attempt."""
    client, script = await server(429, retry=Retry(first=0.01, cap=0.02, budget=0.5), retry_after="1")
    with pytest.raises(KubeError) as failed:
        await client.get(CM)
    assert failed.value.status == 429 and script.seen == ["GET"]


async def test_a_watch_opening_answered_5xx_is_opened_again(server: Connect) -> None:
    client, script = await server(500, 503)
    events = [event async for event in client.watch(Ref("v1", "configmaps", "ns"))]
    assert events == [("ADDED", CM_BODY)]
    assert script.seen == ["GET"] * 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


async def test_an_unreachable_server_is_a_503_kube_error_and_later_calls_do_not_wait_out_a_budget() -> None:
    client = KubeClient(k8s.ApiClient(configuration=_config(_closed_port())), retry=Retry(0.01, 0.02, 0.3))
    try:
        with pytest.raises(KubeError) as first:
            await client.get(CM)
        assert first.value.status == 503 and first.value.unreachable and first.value.transient
        assert "could not be reached" in first.value.message
        tried = client.requests
        assert tried >= 5  # retried within the budget
        with pytest.raises(KubeError) as second:
            await client.list(Ref("v1", "configmaps", "ns"))
        assert second.value.unreachable and client.requests == tried + 1  # once: still unreachable
    finally:
        await client.close()


async def test_the_server_answering_again_restores_the_full_budget(server: Connect) -> None:
    client, script = await server(503, 503)
    client.unreachable = True  # as after an outage that outlasted a budget
    assert await client.get(CM) == CM_BODY  # a 503 is an answer: the server is back, retried as usual
    assert script.seen == ["GET"] * 3 and not client.unreachable
