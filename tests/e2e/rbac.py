"""Least privilege on a real API server: run Klaxon's processes as ServiceAccounts and see every answer.

``RecordingProxy`` sits between a process and the API server (plain HTTP on loopback in, HTTPS
out) and records each request with its caller (by bearer token), method, path and status, so a
test counts ``403 Forbidden`` answers on the client side, for kopf's requests and Klaxon's alike,
and learns which permissions a process used. ``service_account_kubeconfig`` gives a process the
identity of a ServiceAccount through a token from the TokenRequest API.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from klaxon.kube.client import KubeClient

# Headers that belong to one hop, or that aiohttp recomputes (it decompresses what it reads).
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host", "upgrade"}
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


@dataclass(frozen=True)
class Call:
    who: str
    method: str
    path: str
    query: str
    status: int

    @property
    def permission(self) -> tuple[str, str, str, str | None] | None:
        """(apiGroup, resource[/subresource], verb, namespace) as the RBAC authorizer sees it;
        None for non-resource paths (discovery, /version)."""
        m = _PATH.match(self.path)
        if not m:
            return None
        resource, name, sub = m["resource"], m["name"], m["sub"]
        group = "" if m["core"] else m["group"]
        watch = "watch=true" in self.query or "watch=1" in self.query
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(self.method)
        if verb is None:
            verb = "get" if name else ("watch" if watch else "list")
        return group, f"{resource}/{sub}" if sub else resource, verb, m["ns"]


class RecordingProxy:
    """``http://127.0.0.1:PORT`` → the API server; ``calls`` holds every answer, streamed watches too."""

    def __init__(self, upstream: str, tls: ssl.SSLContext | bool) -> None:
        self.upstream = upstream.rstrip("/")
        self.tls = tls
        self.callers: dict[str, str] = {}  # bearer token -> name
        self.calls: list[Call] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def name(self, token: str, who: str) -> None:
        self.callers[token] = who

    async def start(self) -> str:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=True)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        auth = request.headers.get("Authorization", "")
        who = self.callers.get(auth.removeprefix("Bearer ").strip(), "unknown")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None, ssl=self.tls
        ) as upstream:
            self.calls.append(Call(who, request.method, request.path, request.query_string, upstream.status))
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP},
            )
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, asyncio.CancelledError, aiohttp.ClientError):
                pass  # the process went away mid-watch
            return response

    def forbidden(self, who: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.status == 403 and (who is None or c.who == who)]

    def used(self, who: str) -> set[tuple[str, str, str, str | None]]:
        return {p for c in self.calls if c.who == who and c.status < 400 and (p := c.permission)}


async def request_token(admin: KubeClient, namespace: str, service_account: str, seconds: int = 3600) -> str:
    """A token for the ServiceAccount from the TokenRequest API (what `kubectl create token` does)."""
    answer = await admin.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": seconds}},
    )
    return str(answer["status"]["token"])


def service_account_kubeconfig(path: Path, server: str, token: str, who: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "proxy", "cluster": {"server": server}}],
        "users": [{"name": who, "user": {"token": token}}],
        "contexts": [{"name": who, "context": {"cluster": "proxy", "user": who}}],
        "current-context": who,
    }))
    return path


def upstream_of(kubeconfig: str) -> tuple[str, ssl.SSLContext | bool]:
    """The API server URL of an admin kubeconfig and how to trust it."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    if cluster.get("insecure-skip-tls-verify"):
        return cluster["server"], False
    ctx = ssl.create_default_context()
    if cluster.get("certificate-authority"):
        ctx.load_verify_locations(cafile=cluster["certificate-authority"])
    return cluster["server"], ctx


def grants(rules: Iterable[Mapping[str, Any]], permission: tuple[str, str, str, str | None], name: str | None) -> bool:
    group, resource, verb, _ = permission
    return any(
        {group, "*"} & set(r.get("apiGroups") or [])
        and {resource, "*"} & set(r.get("resources") or [])
        and {verb, "*"} & set(r.get("verbs") or [])
        and (not r.get("resourceNames") or name in r["resourceNames"])
        for r in rules
    )
