"""Building blocks shared by the three kinds: base model, durations, conditions, references."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# Go-style durations: both PromQL and CEL's duration() accept them, so one value means the
# same thing in the CRD's CEL rules, in the compiled PrometheusRule and in the engine.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A namespace is a DNS label (RFC 1123), not a subdomain: no dots, at most 63 characters.
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Kubernetes label/annotation keys: an optional DNS-subdomain prefix and '/', then a name of
# at most 63 characters; label values at most 63 characters (Kubernetes' own rules).
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Annotation keys are checked lower-cased by Kubernetes: the prefix may have capitals there.
ANNOTATION_KEY_PATTERN = (
    r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
K8S_LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A URL's authority is what comes before the first /, ? or #; an @ there carries credentials.
URL_CREDENTIALS_PATTERN = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@"
HHMM_PATTERN = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"

MAX_NAME = 253
MAX_SHORT = 256
MAX_TEXT = 4096
MAX_EXPR = 16384
MAX_LIST = 64


# Ten years: far beyond any useful window, and well inside what Go's time.Duration (Prometheus)
# and CEL's duration() represent exactly.
MAX_DURATION = "87600h"


def parse_duration(value: str) -> float:
    """Seconds in a duration such as ``1h30m``."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"invalid duration {value!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))


def _bounded_duration(value: str) -> str:
    if parse_duration(value) > parse_duration(MAX_DURATION):
        raise ValueError(f"duration {value!r} is too long (allowed: at most {MAX_DURATION})")
    return value


def _positive_duration(value: str) -> str:
    if parse_duration(value) <= 0:
        raise ValueError(f"must be longer than 0s, got {value!r} (allowed: a positive duration such as 30s, 5m or 1h)")
    return value


_RFC3339 = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: Any) -> Any:
    """A date-time exactly as the API server's ``format: date-time`` check accepts it.

    That check wants a 'T', seconds and a zone; pydantic alone would also take a date, a
    time without seconds or a naive time, which the API server refuses.
    """
    if not isinstance(value, str):
        return value
    m = _RFC3339.match(value)
    if m is None or not ("00" <= m[2] <= "23" and m[3] <= "59" and m[4] <= "59"):
        raise ValueError(f"invalid time {value!r} (allowed: an RFC 3339 time such as 2026-01-31T18:00:00Z)")
    fraction = ("." + m[5][1:7]) if m[5] else ""
    zone = "+00:00" if m[6] in ("Z", "z") else m[6]
    try:
        return datetime.fromisoformat(f"{m[1]}T{m[2]}:{m[3]}:{m[4]}{fraction}{zone}")
    except ValueError as exc:
        raise ValueError(
            f"invalid time {value!r}: {exc} (allowed: an RFC 3339 time such as 2026-01-31T18:00:00Z)"
        ) from exc


def format_duration(seconds: float) -> str:
    """The shortest Go-style duration for a whole number of milliseconds."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (allowed: an IANA time zone name such as UTC or Europe/Berlin)"
        ) from exc
    return value


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One CEL validation rule as the CRD's ``x-kubernetes-validations`` entry holds it."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cel_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


_DURATION_CEL = cel(f"duration(self) <= duration('{MAX_DURATION}')", f"must be at most {MAX_DURATION}")
Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, max_length=32),
    AfterValidator(_bounded_duration),
    Field(json_schema_extra=cel_rules(_DURATION_CEL)),
]
# A duration where 0s has no meaning (a window, an interval, a timeout).
PositiveDuration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, max_length=32),
    AfterValidator(_bounded_duration),
    AfterValidator(_positive_duration),
    Field(
        json_schema_extra=cel_rules(
            _DURATION_CEL, cel("duration(self) > duration('0s')", "must be longer than 0s (a positive duration)")
        )
    ),
]
# A number the API server can carry: JSON has no NaN or infinity.
Finite = Annotated[float, Field(allow_inf_nan=False)]
Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]


@dataclass(frozen=True)
class NoCredentials:
    """Annotated metadata: a URL carrying no ``user:password@``; those belong in ``secret_field``."""

    secret_field: str

    @property
    def message(self) -> str:
        return (
            f"the URL carries credentials (user:password@), which would be stored in clear text; "
            f"put them in a Secret and reference it from {self.secret_field}"
        )

    def check(self, value: str) -> str:
        if re.match(URL_CREDENTIALS_PATTERN, value):
            raise ValueError(f"{self.message} (allowed: a URL without user info)")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        rule = cel(f"!self.matches('{URL_CREDENTIALS_PATTERN}')", self.message)
        out.setdefault("x-kubernetes-validations", []).append(rule)
        return out


URL_CONSTRAINTS = StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048)
NamespaceName = Annotated[str, StringConstraints(pattern=NAMESPACE_PATTERN, max_length=63)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_timezone)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME_PATTERN, max_length=128)]
LabelValue = Annotated[str, StringConstraints(max_length=1024)]
ObjectName = Annotated[str, StringConstraints(pattern=K8S_NAME_PATTERN, max_length=MAX_NAME)]
ShortText = Annotated[str, StringConstraints(max_length=MAX_SHORT)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
HHMM = Annotated[str, StringConstraints(pattern=HHMM_PATTERN, max_length=5)]
Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAYS: tuple[Weekday, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _every_day() -> list[Weekday]:
    return list(WEEKDAYS)


class KModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
    )

    def dump(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


class SecretKeySelector(KModel):
    name: ObjectName = Field(description="is the name of the Secret in the object's namespace. Required.")
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=MAX_NAME)] = Field(
        description="is the key inside the Secret's data. Required."
    )


class ObjectReference(KModel):
    name: ObjectName = Field(description="is the referenced object's name. Required.")
    namespace: NamespaceName | None = Field(
        default=None,
        description="is the referenced object's namespace. Defaults to the referring object's namespace.",
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(KModel):
    type: Annotated[str, StringConstraints(max_length=316)] = Field(
        description="is the aspect of the object this condition describes, e.g. Ready. Required."
    )
    status: ConditionStatus = Field(description="is True, False or Unknown. Required.")
    reason: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="", description="is a CamelCase word saying why the condition has its status. Defaults to empty."
    )
    message: Annotated[str, StringConstraints(max_length=32768)] = Field(
        default="", description="is a human-readable explanation. Defaults to empty."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="is when the status last changed. Set by the operator."
    )
    observed_generation: int | None = Field(
        default=None,
        description="is the metadata.generation the condition was computed from. Set by the operator.",
    )


class ScheduleWindow(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.start != self.end",
                "start and end must differ (use 00:00 to 24:00 for a whole day)",
                ".end",
            )
        )
    )

    days: list[Weekday] = Field(
        default_factory=_every_day,
        min_length=1,
        max_length=7,
        description="is the list of weekdays (Mon..Sun) on which the window starts. Defaults to every day.",
    )
    start: HHMM = Field(description="is the local wall-clock start, HH:MM, inclusive. Required.")
    end: HHMM = Field(
        description=(
            "is the local wall-clock end, HH:MM, exclusive; an end before the start crosses midnight "
            "into the next day. Required."
        )
    )


class Schedule(KModel):
    timezone: TimeZone = Field(
        default="UTC", description="is the IANA time zone the windows are read in. Defaults to UTC."
    )
    windows: list[ScheduleWindow] = Field(
        min_length=1,
        max_length=MAX_LIST,
        description="is the list of active windows; a time matches when it is inside any of them. Required.",
    )


class Status(KModel):
    """Base of the status models: lenient on read so an older operator's fields never break parsing."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = Field(
        default=None, description="is the metadata.generation last processed by the operator."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="is the list of conditions: Ready, and the others each kind documents.",
    )
