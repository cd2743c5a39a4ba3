"""The three kinds as whole objects, and what the CRD generator needs to know of each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .alertconfig import AlertConfigSpec, AlertConfigStatus
from .alertrule import AlertRuleSpec
from .alertrule_status import AlertRuleStatus
from .channel import NotificationChannelSpec, NotificationChannelStatus
from .common import Status
from .constants import ALERT_CONFIGS, ALERT_RULES, GROUP, NOTIFICATION_CHANNELS

__all__ = ["KINDS", "KindInfo", "Metadata"]


class Metadata(BaseModel):
    """The slice of ObjectMeta Klaxon reads; everything else passes through."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""

    def to_crd(self) -> dict[str, Any]:
        col: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            col["priority"] = self.priority
        if self.description:
            col["description"] = self.description
        return col


def _ready(kind: str) -> PrinterColumn:
    return PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status', description=f"{kind} is in effect")


def _reason() -> PrinterColumn:
    return PrinterColumn("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1)


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[Status]
    description: str
    columns: tuple[PrinterColumn, ...] = field(default=())

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo(
            kind="AlertRule",
            plural=ALERT_RULES,
            singular="alertrule",
            short_names=("ar",),
            spec=AlertRuleSpec,
            status=AlertRuleStatus,
            description="AlertRule watches a query or a stream of events and says when it is a problem, "
            "at which level, and whom to tell.",
            columns=(
                PrinterColumn("State", ".status.state"),
                PrinterColumn("Severity", ".spec.severity"),
                PrinterColumn("Last-Eval", ".status.lastEvaluation.time", type="date"),
                _ready("the rule"),
                _AGE,
                PrinterColumn("Engine", ".status.engine", priority=1),
                _reason(),
            ),
        ),
        KindInfo(
            kind="AlertConfig",
            plural=ALERT_CONFIGS,
            singular="alertconfig",
            short_names=("ac",),
            spec=AlertConfigSpec,
            status=AlertConfigStatus,
            description="AlertConfig is the evaluation profile AlertRules reference: Prometheus endpoint, "
            "PrometheusRule labels, evaluator shards, grouping and silences.",
            columns=(
                PrinterColumn("Rules", ".status.rulesAssigned", type="integer"),
                PrinterColumn("Evaluator", ".status.evaluatorReady", type="boolean"),
                _ready("the config"),
                _AGE,
                PrinterColumn("Shards", ".spec.evaluator.shards", type="integer", priority=1),
                _reason(),
            ),
        ),
        KindInfo(
            kind="NotificationChannel",
            plural=NOTIFICATION_CHANNELS,
            singular="notificationchannel",
            short_names=("nc",),
            spec=NotificationChannelSpec,
            status=NotificationChannelStatus,
            description="NotificationChannel is a destination for notifications: webhook, Slack, email, "
            "PagerDuty, Teams, Opsgenie or Alertmanager. Credentials come from Secrets only.",
            columns=(
                PrinterColumn("Type", ".spec.type"),
                PrinterColumn("Last-Delivery", ".status.lastDelivery.outcome"),
                _ready("the channel"),
                _AGE,
                PrinterColumn("Delivered", ".status.deliveredCount", type="integer", priority=1),
                PrinterColumn("Failed", ".status.failedCount", type="integer", priority=1),
                _reason(),
            ),
        ),
    )
}
