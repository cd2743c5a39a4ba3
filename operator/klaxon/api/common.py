"""Building blocks shared by the three kinds: base model, durations, conditions, references."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

# Go-style durations: both PromQL and CEL's duration() accept them, so one value means the
# same thing in the CRD's CEL rules, in the compiled PrometheusRule and in the engine.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HHMM_PATTERN = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"

MAX_NAME = 253
MAX_SHORT = 256
MAX_TEXT = 4096
MAX_EXPR = 16384
MAX_LIST = 64


def parse_duration(value: str) -> float:
    """Seconds in a duration such as ``1h30m``."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"invalid duration {value!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))


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


Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]
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


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One CEL validation rule as the CRD's ``x-kubernetes-validations`` entry holds it."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cel_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


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
    namespace: ObjectName | None = Field(
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
