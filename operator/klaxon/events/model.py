"""What an event is: ``EventIn``, the strict schema of ``POST /v1/events`` (docs/events.md), and
the loose mapping ``klaxon test-rule`` reads from files, with the field aliases it accepts.

Matching reads either form through one view (``Facts``): ``EventIn`` has the attributes itself,
a mapping gets them from ``facts_of``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

MAX_ERRORS = 100
# tuples, not X | Y: a union in isinstance is rebuilt on every call (hot path)
_SEQ = (list, tuple)
_NUM = (int, float)
TIME_FIELDS = ("time", "timestamp", "started_at", "startedAt", "created_at")

Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TypeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
LabelValue = Annotated[str, StringConstraints(max_length=256)]


class Facts(Protocol):
    """What the event filter reads of an event (``klaxon.events.match``)."""

    @property
    def risk_score(self) -> float | None: ...
    @property
    def confidence(self) -> float | None: ...
    @property
    def object_types(self) -> Sequence[str]: ...
    @property
    def cameras(self) -> Sequence[str]: ...
    @property
    def zone_ids(self) -> Sequence[str]: ...


class EventIn(BaseModel):
    """One detection event (docs/events.md). Strict: no type coercion, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: Name = Field(description="unique per event; a retried event with a seen id is a duplicate")
    timestamp: AwareDatetime = Field(description="when it happened, RFC 3339 with an offset")
    camera_id: Name | None = None
    zone_ids: list[Name] = Field(default_factory=list, max_length=64)
    object_types: list[TypeName] = Field(default_factory=list, max_length=64)
    risk_score: Annotated[float, Field(ge=0, le=100)] | None = None
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=32)

    @field_validator("labels")
    @classmethod
    def _no_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(v) & RESERVED)
        if clash:
            raise ValueError(f"label names {', '.join(clash)} are reserved for the event's own fields")
        return v

    @property
    def cameras(self) -> tuple[str, ...]:
        """The camera as the filter reads it (``Facts``)."""
        return () if self.camera_id is None else (self.camera_id,)

    def fields(self) -> dict[str, Any]:
        """The flat field map the pipeline, dedup-key templates and silences see."""
        out: dict[str, Any] = dict(self.labels)
        out.update(
            id=self.id,
            timestamp=self.timestamp,
            camera_id=self.camera_id,
            zone_ids=self.zone_ids,
            object_types=self.object_types,
            risk_score=self.risk_score,
            confidence=self.confidence,
        )
        return out


RESERVED = frozenset(EventIn.model_fields) | {
    # the aliases facts_of / event_time also read: a label must not stand in for an event field
    "cameraId",
    "camera",
    "zoneIds",
    "zoneId",
    "zone",
    "objectTypes",
    "objectType",
    "risk",
    "min_confidence",
    "started_at",
    "startedAt",
    "created_at",
    "object_type",
    "zone_id",
    "rule",
    "alertname",
    "namespace",
    "severity",
    "event_id",
    "time",
}

ALLOWED: dict[str, str] = {
    "id": "string of 1..128 characters",
    "timestamp": "RFC 3339 date-time with an offset, e.g. 2026-11-22T22:15:00Z",
    "camera_id": "string of 1..128 characters, or null",
    "zone_ids": "list of at most 64 strings of 1..128 characters",
    "object_types": "list of at most 64 strings of 1..64 characters",
    "risk_score": "number 0..100, or null",
    "confidence": "number 0..1, or null",
    "labels": "object of at most 32 string values; names [A-Za-z_][A-Za-z0-9_]*, not an event field",
}
_FIELDS = ", ".join(EventIn.model_fields)
_BODY = "a JSON object (one event) or a JSON array of objects (a batch)"

_ONE = TypeAdapter(EventIn)
_MANY = TypeAdapter(list[EventIn])


def validation_errors(exc: ValidationError, batch: bool) -> list[dict[str, Any]]:
    """pydantic's errors as ``{index, field, problem, allowed}`` (at most MAX_ERRORS)."""
    out: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False)[:MAX_ERRORS]:
        loc = list(err.get("loc", ()))
        index: int | None = 0
        if batch:
            first = loc.pop(0) if loc and isinstance(loc[0], int) else None
            index = first if isinstance(first, int) else None
        field = str(loc[0]) if loc else None
        problem = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            problem = "unknown field; free labels go under 'labels'"
            allowed = _FIELDS
        elif field is None:
            allowed = _BODY
        else:
            allowed = ALLOWED.get(field, _FIELDS)
        if len(loc) > 1:
            problem = f"{'.'.join(str(x) for x in loc[1:])}: {problem}"
        out.append({"index": index, "field": field, "problem": problem, "allowed": allowed})
    return out


def parse_body(body: bytes) -> tuple[list[EventIn], list[dict[str, Any]]]:
    """The events of a request body (an object or an array), or the per-event errors."""
    head = body.lstrip()[:1]
    if head not in (b"[", b"{"):
        return [], [{"index": None, "field": None, "problem": "body must be a JSON object or array", "allowed": _BODY}]
    batch = head == b"["
    try:
        events = _MANY.validate_json(body) if batch else [_ONE.validate_json(body)]
    except ValidationError as exc:
        return [], validation_errors(exc, batch)
    return events, []


# -- the loose form: a mapping with aliases (klaxon test-rule, stored events) ----------------


def list_field(event: Mapping[str, Any], *names: str) -> list[str]:
    """The first of ``names`` present, as a list of strings (a scalar is a list of one)."""
    for name in names:
        v = event.get(name)
        if isinstance(v, _SEQ):
            return [str(x) for x in v]
        if v is not None:
            return [str(v)]
    return []


def number_field(event: Mapping[str, Any], *names: str) -> float | None:
    """The first of ``names`` that holds a number (booleans are not numbers)."""
    for name in names:
        v = event.get(name)
        if isinstance(v, _NUM) and not isinstance(v, bool):
            return float(v)
    return None


def event_time(event: Mapping[str, Any]) -> datetime:
    """The event's time: the first of time/timestamp/started_at; naive ISO strings are UTC."""
    for name in TIME_FIELDS:
        v = event.get(name)
        if isinstance(v, datetime):
            return v if v.tzinfo else v.replace(tzinfo=UTC)
        if isinstance(v, _NUM) and not isinstance(v, bool):
            return datetime.fromtimestamp(v, UTC)
        if isinstance(v, str) and v:
            ts = datetime.fromisoformat(v.replace("Z", "+00:00"))
            return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    raise ValueError(f"event has no time (allowed fields: {', '.join(TIME_FIELDS)})")


def event_id(event: Mapping[str, Any], index: int) -> str:
    v = event.get("event_id", event.get("id"))
    return str(v) if v is not None else str(index)


@dataclass(frozen=True, slots=True)
class MappingFacts:
    """``Facts`` read from a mapping, aliases included."""

    risk_score: float | None
    confidence: float | None
    object_types: list[str]
    cameras: list[str]
    zone_ids: list[str]


def facts_of(event: Mapping[str, Any]) -> MappingFacts:
    """What the filter reads of a mapping: each field under its name or one of its aliases."""
    return MappingFacts(
        risk_score=number_field(event, "risk_score", "risk"),
        confidence=number_field(event, "confidence", "min_confidence"),
        object_types=list_field(event, "object_types", "object_type", "objectTypes", "objectType"),
        cameras=list_field(event, "camera_id", "cameraId", "camera"),
        zone_ids=list_field(event, "zone_ids", "zone_id", "zoneIds", "zoneId", "zone"),
    )
