"""What the evaluator connects to, built from its AlertConfig: Prometheus (endpoint, auth, TLS from
Secrets) and the Notifier (its outbox, Secrets and status writes through the Kubernetes API)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.common import SecretKeySelector, parse_duration
from klaxon.api.sharding import parse_shard
from klaxon.notify import Notifier
from klaxon.prom.client import PrometheusClient

DEFAULT_STATE_DIR = "/var/lib/klaxon"

#: Reads one key of one Secret in the AlertConfig's namespace: (name, key) -> value.
ReadSecret = Callable[[str, str], Awaitable[str]]


class ConfigError(Exception):
    """The AlertConfig cannot be used as it is (the message names the field)."""


def outbox_path(state_dir: str | Path, shard: str) -> Path:
    """The outbox file of one shard in the state directory (the outbox creates what is missing, and
    works from memory, saying so, where it cannot: an unwritable state dir is no crash loop)."""
    index, shards = parse_shard(shard)
    return Path(state_dir) / (f"outbox-{index}of{shards}.sqlite" if shards > 1 else "outbox.sqlite")


def make_notifier(api_client: Any, path: Path, clock: Callable[[], float], **kwargs: Any) -> Notifier:
    """The process' Notifier: Secrets and status through the API, on the evaluation ``clock``."""
    from klaxon.kube.notify_io import KubeSecretResolver, KubeStatusSink

    return Notifier(
        path,
        KubeSecretResolver(api_client),
        KubeStatusSink(api_client),
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
