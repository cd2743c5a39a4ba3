"""The AlertRule's status: what the operator and the evaluator write about a rule."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from .alertrule import LevelName, State
from .common import KModel, ObjectReference, Status


class Evaluated(KModel):
    model_config = ConfigDict(extra="ignore")

    time: datetime | None = Field(default=None, description="is when the rule was last evaluated.")
    value: float | None = Field(default=None, description="is the value at the last evaluation, if any.")
    message: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="", description="is a short account of the last evaluation."
    )


class ActiveSeries(KModel):
    model_config = ConfigDict(extra="ignore")

    labels: dict[str, str] = Field(default_factory=dict, description="is the series' splitBy labels.")
    state: State = Field(default="Inactive", description="is the series' state.")
    level: LevelName | None = Field(default=None, description="is the active level, if any.")
    value: float | None = Field(default=None, description="is the series' last value.")
    since: datetime | None = Field(default=None, description="is when the series entered its state.")
    engine_state: dict[str, Any] | None = Field(
        default=None,
        description="is the evaluator's counting state, kept so a restart loses nothing.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class Notified(KModel):
    model_config = ConfigDict(extra="ignore")

    time: datetime | None = Field(default=None, description="is when the last notification went out.")
    channel: str = Field(default="", description="is the channel it went to.")
    outcome: Literal["Delivered", "Failed", "Suppressed", ""] = Field(default="", description="is its outcome.")
    reason: str = Field(default="", description="is why it was sent or suppressed.")


class FiringEpisode(KModel):
    model_config = ConfigDict(extra="ignore")

    labels: dict[str, str] = Field(default_factory=dict, description="is the instance's labels.")
    level: LevelName | None = Field(default=None, description="is the level it fired at.")
    since: datetime | None = Field(default=None, description="is when it started firing.")
    until: datetime | None = Field(default=None, description="is when it stopped firing.")


class AlertEntry(KModel):
    model_config = ConfigDict(extra="ignore")

    key: str = Field(description="is the entry's dedup key.")
    state: Literal["Open", "Acknowledged", "Closed"] = Field(default="Open", description="is the entry's state.")
    first_event_time: datetime | None = Field(default=None, description="is the first event's time.")
    last_event_time: datetime | None = Field(default=None, description="is the latest event's time.")
    event_count: int = Field(default=0, description="is how many events the entry absorbed.")
    acknowledged_by: str | None = Field(default=None, description="is who acknowledged it.")
    action: str | None = Field(default=None, description="is the action taken (preset tag).")
    root_cause: str | None = Field(default=None, description="is the root cause (preset tag).")


class AlertRuleStatus(Status):
    engine: Literal["prometheus", "evaluator"] | None = Field(
        default=None, description="is the engine that evaluates the rule, as resolved from evaluation.engine."
    )
    engine_reasons: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="is why the rule needs the evaluator (features PromQL cannot hold).",
    )
    state: State | None = Field(default=None, description="is the most severe state over the rule's series.")
    level: LevelName | None = Field(default=None, description="is the highest active level.")
    reason: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="is a CamelCase word explaining the state (e.g. OutsideSchedule, Muted)."
    )
    last_evaluation: Evaluated | None = Field(default=None, description="is the last evaluation.")
    firing_since: datetime | None = Field(default=None, description="is when the rule started firing.")
    active_series: list[ActiveSeries] = Field(
        default_factory=list, max_length=50, description="is the non-inactive series (at most 50)."
    )
    active_series_count: int = Field(default=0, description="is the number of non-inactive series.")
    last_notification: Notified | None = Field(default=None, description="is the last notification.")
    recent_firings: list[FiringEpisode] = Field(
        default_factory=list,
        max_length=10,
        description="is the last firing episodes that ended, newest first (at most 10), including ones "
        "shorter than an evaluation cycle (engine: prometheus).",
    )
    prometheus_rule_ref: ObjectReference | None = Field(default=None, description="is the generated PrometheusRule.")
    entries: list[AlertEntry] = Field(
        default_factory=list, max_length=50, description="is the open alert entries of an event rule (at most 50)."
    )
    entries_count: int = Field(default=0, description="is the number of open alert entries.")
