"""The notifier's inputs and seams: the ``Notification`` and the two injected protocols.

The notify package never talks to the Kubernetes API (DESIGN §2): secret values come in through a
``SecretResolver`` and channel status goes out through a ``StatusSink``; the operator implements
both with the API, tests and the CLI use the in-memory ones below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from ..api.alertrule_status import Notified
from ..api.channel import NotificationChannelStatus

Source = Literal["metric", "event"]


@dataclass(frozen=True)
class Notification:
    """One state transition of one alert instance, as the evaluator hands it over.

    ``dedup_key`` names the instance (rendered from ``notify.dedupKey``); ``episode_id`` changes
    each time the instance starts firing anew, so acknowledgement and "notified in this episode"
    are scoped to it. ``channels`` empty means the rule's, else the AlertConfig's defaults.
    ``source="event"`` marks a one-shot event alert (no repeat, no resolve tracking).
    """

    rule_namespace: str
    rule_name: str
    dedup_key: str
    episode_id: str
    state_from: str
    state_to: str
    time: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    level: str | None = None
    severity: str = "warning"
    value: float | None = None
    channels: tuple[str, ...] = ()
    source: Source = "metric"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["time"] = self.time.isoformat()
        data["labels"] = dict(self.labels)
        data["annotations"] = dict(self.annotations)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Notification:
        values = dict(data)
        values["time"] = datetime.fromisoformat(values["time"])
        values["channels"] = tuple(values.get("channels", ()))
        return cls(**values)


class SecretError(Exception):
    """A referenced Secret or key is missing; the message names it but never holds a value."""


class SecretResolver(Protocol):
    """Reads one key of one Secret. Implemented with the Kubernetes API by the operator."""

    async def get(self, namespace: str, name: str, key: str) -> str: ...


class StatusSink(Protocol):
    """Where channel status, rule notification records and Events go (the operator writes them)."""

    async def channel_status(self, namespace: str, name: str, status: NotificationChannelStatus) -> None: ...

    async def rule_notified(self, namespace: str, name: str, notified: Notified) -> None: ...

    async def event(
        self, namespace: str, kind: str, name: str, reason: str, message: str, warning: bool = False
    ) -> None: ...


class DictSecretResolver:
    """Secrets from a dict ``{(namespace, name): {key: value}}`` — for tests and the CLI."""

    def __init__(self, secrets: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {k: dict(v) for k, v in (secrets or {}).items()}

    async def get(self, namespace: str, name: str, key: str) -> str:
        try:
            return self.secrets[(namespace, name)][key]
        except KeyError:
            raise SecretError(f"Secret {namespace}/{name} has no key {key!r}") from None


@dataclass
class MemoryStatusSink:
    """Keeps what would be written, for tests and the CLI."""

    channels: dict[tuple[str, str], NotificationChannelStatus] = field(default_factory=dict)
    rules: dict[tuple[str, str], Notified] = field(default_factory=dict)
    events: list[tuple[str, str, str, str, str, bool]] = field(default_factory=list)
    writes: int = 0

    async def channel_status(self, namespace: str, name: str, status: NotificationChannelStatus) -> None:
        self.channels[(namespace, name)] = status
        self.writes += 1

    async def rule_notified(self, namespace: str, name: str, notified: Notified) -> None:
        self.rules[(namespace, name)] = notified

    async def event(
        self, namespace: str, kind: str, name: str, reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append((namespace, kind, name, reason, message, warning))
