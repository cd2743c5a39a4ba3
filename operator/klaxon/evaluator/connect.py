"""What the evaluator connects to, built from its AlertConfig: Prometheus (endpoint, auth, TLS from
Secrets) and the Notifier (its outbox, Secrets and status writes through the Kubernetes API).

``KubeSecretResolver`` is the one way the evaluator reads Secrets (Prometheus credentials, the
event token, channel credentials): each Secret is kept a few seconds so a burst of deliveries
reads it once; values never reach a log line or an exception message.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.common import SecretKeySelector, parse_duration
from klaxon.api.sharding import parse_shard
from klaxon.kube.client import FAILURES, KubeClient, KubeError
from klaxon.kube.notify_io import KubeStatusSink
from klaxon.kube.secrets import read_secret
from klaxon.notify import Notifier, SecretError
from klaxon.prom.client import PrometheusClient

DEFAULT_STATE_DIR = "/var/lib/klaxon"

#: Reads one key of one Secret in the AlertConfig's namespace: (name, key) -> value.
ReadSecret = Callable[[str, str], Awaitable[str]]


class ConfigError(Exception):
    """The AlertConfig cannot be used as it is (the message names the field)."""


#: Why a new Prometheus client may not be buildable yet (a Secret not there or not readable).
RENEW_FAILURES: tuple[type[Exception], ...] = (ConfigError, SecretError, *FAILURES)


def outbox_path(state_dir: str | Path, shard: str) -> Path:
    """The outbox file of one shard in the state directory (the outbox creates what is missing, and
    works from memory, saying so, where it cannot: an unwritable state dir is no crash loop)."""
    index, shards = parse_shard(shard)
    return Path(state_dir) / (f"outbox-{index}of{shards}.sqlite" if shards > 1 else "outbox.sqlite")


class KubeSecretResolver:
    """``SecretResolver`` over the API: ``get(ns, name, key)``, each Secret cached for ``ttl_s``.

    A missing Secret or key, or a Secret the evaluator may not read, raises ``SecretError``
    naming the Secret and key (never a value). A key read from the cache is as old as ``ttl_s``
    at most, so a rotated webhook URL is picked up within seconds.
    """

    def __init__(self, kube: KubeClient, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self.reads = 0

    async def _data(self, namespace: str, name: str) -> dict[str, str]:
        hit = self._cache.get((namespace, name))
        now = self.clock()
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        self.reads += 1
        try:
            data = await read_secret(self.kube, namespace, name)
        except KubeError as exc:  # the server's Status (no Secret data); still, keep only the code
            self._cache.pop((namespace, name), None)
            raise SecretError(f"Secret {namespace}/{name} could not be read: {exc.status} {exc.reason}") from None
        if data is None:
            self._cache.pop((namespace, name), None)
            raise SecretError(f"Secret {namespace}/{name} not found")
        self._cache[(namespace, name)] = (now, data)
        return data

    async def get(self, namespace: str, name: str, key: str) -> str:
        data = await self._data(namespace, name)
        if key not in data:
            raise SecretError(f"Secret {namespace}/{name} has no key {key!r}")
        return data[key]

    def forget(self, namespace: str | None = None, name: str | None = None) -> None:
        """Drop cached Secrets (all, one namespace's, or one)."""
        for k in list(self._cache):
            if (namespace is None or k[0] == namespace) and (name is None or k[1] == name):
                del self._cache[k]


def make_notifier(
    kube: KubeClient, path: Path, clock: Callable[[], float], secrets: KubeSecretResolver | None = None, **kwargs: Any
) -> Notifier:
    """The process' Notifier: Secrets and status through the API, on the evaluation ``clock``."""
    return Notifier(
        path,
        secrets or KubeSecretResolver(kube),
        KubeStatusSink(kube),
        clock=lambda: datetime.fromtimestamp(clock(), UTC),
        **kwargs,
    )


async def prometheus_client(read_secret: ReadSecret, config: AlertConfigSpec) -> PrometheusClient:
    """A PrometheusClient from the AlertConfig's endpoint, auth and TLS.

    Credentials come through ``read_secret`` and go to the client only; the CA bundle and a
    client certificate and key go to private temporary files (mode 0600) that are removed once
    the SSL context is built.
    """
    ep = config.prometheus
    if ep is None:  # an events-only config: its metric rules (if any) report this as their error
        return PrometheusClient.unconfigured_because(
            "the AlertConfig sets no spec.prometheus endpoint: only event rules can be evaluated"
        )

    async def secret(sel: SecretKeySelector) -> str:
        return await read_secret(sel.name, sel.key)

    token = basic = None
    if ep.auth is not None and ep.auth.bearer_token is not None:
        token = await secret(ep.auth.bearer_token)
    if ep.auth is not None and ep.auth.basic_auth is not None:
        basic = (await secret(ep.auth.basic_auth.username), await secret(ep.auth.basic_auth.password))
    tls = ep.tls
    files: dict[str, str] = {}  # ca / cert / key PEM, each in a private file while the context is built

    async def to_file(what: str, sel: SecretKeySelector | None) -> None:
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
                raise ConfigError("spec.prometheus.tls: cert and key go together (a client certificate needs both)")
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
