"""Shared fixtures: a recording HTTP receiver on loopback, secrets, and a notifier factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from klaxon.api.channel import NotificationChannelSpec
from klaxon.notify import DictSecretResolver, MemoryStatusSink, Notification, Notifier
from support.receiver import Hit, Receiver, receiver

__all__ = ["Hit", "Receiver", "receiver"]

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


@pytest.fixture
def secrets() -> DictSecretResolver:
    return DictSecretResolver({k: dict(v) for k, v in SECRETS.items()})


#: Short time scales through the channel's own configuration (``spec.retry``).
FAST_RETRY = {"initialBackoff": "20ms", "maxBackoff": "200ms", "attemptTimeout": "2s"}


@pytest.fixture
async def make_notifier(
    tmp_path: Path, secrets: DictSecretResolver
) -> AsyncIterator[Callable[..., Awaitable[Notifier]]]:
    made: list[Notifier] = []

    async def make(sink: MemoryStatusSink | None = None, **kw: Any) -> Notifier:
        kw.setdefault("status_interval_s", 0.05)
        n = Notifier(kw.pop("path", tmp_path / "outbox.sqlite"), secrets, sink or MemoryStatusSink(), **kw)
        await n.start()
        made.append(n)
        return n

    yield make
    for n in made:
        await n.stop(grace_s=1)


def channel(spec: dict[str, Any]) -> NotificationChannelSpec:
    spec.setdefault("rateLimit", {"perMinute": 100000})
    spec["retry"] = {**FAST_RETRY, **spec.get("retry", {})}
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
