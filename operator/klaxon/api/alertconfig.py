"""The AlertConfig kind: the evaluation profile rules reference."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from .common import (
    ANNOTATION_KEY_PATTERN,
    K8S_LABEL_VALUE_PATTERN,
    MAX_LIST,
    QUALIFIED_NAME_PATTERN,
    URL_CONSTRAINTS,
    KModel,
    LabelName,
    LabelValue,
    NoCredentials,
    ObjectName,
    PositiveDuration,
    Schedule,
    SecretKeySelector,
    ShortText,
    Status,
    Timestamp,
    cel,
    cel_rules,
)
from .constants import DEFAULT_INTERVAL

# Keys and values of Kubernetes labels and annotations on the generated PrometheusRules.
QualifiedName = Annotated[str, StringConstraints(pattern=QUALIFIED_NAME_PATTERN, max_length=317)]
AnnotationKey = Annotated[str, StringConstraints(pattern=ANNOTATION_KEY_PATTERN, max_length=317)]
K8sLabelValue = Annotated[str, StringConstraints(pattern=K8S_LABEL_VALUE_PATTERN, max_length=63)]
_KEY_PREFIX_RULE = cel(
    "self.all(k, !k.contains('/') || k.matches('^[^/]{1,253}/'))",
    "the prefix of a key (before /) is at most 253 characters",
)
Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$", max_length=32)]


class BasicAuth(KModel):
    username: SecretKeySelector = Field(description="is the Secret key holding the user name. Required.")
    password: SecretKeySelector = Field(description="is the Secret key holding the password. Required.")


class PrometheusAuth(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("!(has(self.bearerToken) && has(self.basicAuth))", "set at most one of bearerToken and basicAuth")
        )
    )

    bearer_token: SecretKeySelector | None = Field(
        default=None, description="is the Secret key holding a bearer token. Optional."
    )
    basic_auth: BasicAuth | None = Field(default=None, description="is HTTP basic auth from a Secret. Optional.")


class TLSConfig(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.cert) == has(self.key)", "a client certificate needs both cert and key")
        )
    )

    ca: SecretKeySelector | None = Field(
        default=None, description="is the Secret key holding the CA bundle (PEM). Defaults to the system CAs."
    )
    cert: SecretKeySelector | None = Field(
        default=None, description="is the Secret key holding a client certificate for mTLS (PEM), with key. Optional."
    )
    key: SecretKeySelector | None = Field(
        default=None, description="is the Secret key holding the client certificate's private key (PEM). Optional."
    )
    server_name: ShortText | None = Field(
        default=None,
        description="is the name the server's certificate must carry (also sent as SNI). Defaults to the URL's host.",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        description="is true to skip certificate verification (never in production). Defaults to false.",
    )


class PrometheusEndpoint(KModel):
    url: Annotated[str, URL_CONSTRAINTS, NoCredentials("prometheus.auth (basicAuth or bearerToken)")] = Field(
        description="is the base URL of a Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, "
        "VictoriaMetrics), e.g. http://prometheus-operated.monitoring:9090. Required."
    )
    auth: PrometheusAuth | None = Field(default=None, description="is how to authenticate. Optional.")
    tls: TLSConfig | None = Field(default=None, description="is TLS settings. Optional.")
    timeout: PositiveDuration = Field(default="30s", description="is the per-query timeout. Defaults to 30s.")


class PrometheusRuleTarget(KModel):
    labels: dict[QualifiedName, K8sLabelValue] = Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra=cel_rules(_KEY_PREFIX_RULE),
        description="is the labels put on generated PrometheusRules so Prometheus' ruleSelector picks them up. "
        "Defaults to none.",
    )
    annotations: dict[AnnotationKey, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra=cel_rules(_KEY_PREFIX_RULE),
        description="is annotations put on generated PrometheusRules. Defaults to none.",
    )


class Defaults(KModel):
    interval: PositiveDuration = Field(
        default=DEFAULT_INTERVAL,
        description=f"is the evaluation interval of rules that set none. Defaults to {DEFAULT_INTERVAL}.",
    )
    channels: list[ObjectName] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="is the NotificationChannels of rules that name none. Defaults to none.",
    )


ResourceName = Literal["cpu", "memory"]
AckMechanism = Literal["button", "view", "act", "setRootCause"]


def _default_requests() -> dict[ResourceName, str]:
    return {"cpu": "50m", "memory": "128Mi"}


def _default_limits() -> dict[ResourceName, str]:
    return {"memory": "512Mi"}


def _default_ack() -> list[AckMechanism]:
    return ["button"]


class Resources(KModel):
    requests: dict[Literal["cpu", "memory"], Quantity] = Field(
        default_factory=_default_requests,
        max_length=2,
        description="is the evaluator container's requests. Defaults to cpu 50m, memory 128Mi.",
    )
    limits: dict[Literal["cpu", "memory"], Quantity] = Field(
        default_factory=_default_limits,
        max_length=2,
        description="is the evaluator container's limits. Defaults to memory 512Mi.",
    )


class EvaluatorSpec(KModel):
    enabled: bool = Field(
        default=True, description="is false to run no evaluator (prometheus-engine rules only). Defaults to true."
    )
    shards: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="is the number of evaluator Deployments the rules are split across. Defaults to 1."
    )
    replicas: Annotated[int, Field(ge=1, le=5)] = Field(
        default=1,
        description="is the pod count of each shard's Deployment: one holds the shard's Lease and evaluates, "
        "the others stand by. Defaults to 1.",
    )
    image: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="is the evaluator image. Defaults to the operator's own image."
    )
    resources: Resources = Field(
        default_factory=Resources, description="is the evaluator's resources. Defaults to small requests."
    )
    status_interval: PositiveDuration = Field(
        default="5m",
        description="is the status heartbeat: an unchanged rule's status is rewritten at most this often. "
        "Defaults to 5m.",
    )
    max_status_writes_per_minute: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=120, description="is the budget of status writes per minute per shard. Defaults to 120."
    )


class Grouping(KModel):
    window: PositiveDuration = Field(
        default="5m", description="is the time window events are grouped in. Defaults to 5m."
    )
    min_events: Annotated[int, Field(ge=1, le=100000)] = Field(
        default=1, description="is the fewest matching events in a window that open an alert. Defaults to 1."
    )
    group_by: list[LabelName] = Field(
        default_factory=list,
        max_length=16,
        description="is the labels that split events into separate alerts. Defaults to the dedup key.",
    )


class Matcher(KModel):
    label: LabelName = Field(description="is the label name. Required.")
    op: Literal["=", "!=", "=~", "!~"] = Field(default="=", description="is =, !=, =~ or !~. Defaults to =.")
    value: LabelValue = Field(
        description="is the value, or for =~ and !~ an RE2 regular expression matching the whole value "
        "(anchored, as in Alertmanager). Required."
    )


class Silence(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("!has(self.startsAt) || self.startsAt < self.until", "startsAt must be before until", ".until")
        )
    )

    matchers: list[Matcher] = Field(
        min_length=1,
        max_length=32,
        description="is the list of label matchers; an alert is silenced when all match. Required.",
    )
    starts_at: Timestamp | None = Field(default=None, description="is when the silence starts. Defaults to now.")
    until: Timestamp = Field(description="is when the silence ends (RFC 3339). Required.")
    reason: ShortText = Field(default="", description="is why. Defaults to empty.")
    created_by: ShortText = Field(default="", description="is who created it. Defaults to empty.")


class MuteTimeInterval(KModel):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][-a-z0-9]*$", max_length=63)] = Field(
        description="is the interval's name. Required."
    )
    schedule: Schedule = Field(description="is when notifications are muted. Required.")


class EventIngestion(KModel):
    token: SecretKeySelector | None = Field(
        default=None,
        description="is the Secret key holding the bearer token POST /v1/events requires. "
        "Optional; unset disables ingestion.",
    )
    max_batch: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=1000, description="is the most events one request may carry. Defaults to 1000."
    )
    queue_size: Annotated[int, Field(ge=1, le=1000000)] = Field(
        default=10000, description="is the ingestion queue's capacity; past it requests get 429. Defaults to 10000."
    )


class PresetTag(KModel):
    category: Literal["action", "rootCause"] = Field(description="is action or rootCause. Required.")
    text: ShortText = Field(description="is the tag's text. Required.")


class Entries(KModel):
    preset_tags: list[PresetTag] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="is the action and root-cause tags offered on alert entries. Defaults to none.",
    )
    allow_custom_action: bool = Field(
        default=True, description="is whether free-text actions are accepted. Defaults to true."
    )
    allow_custom_root_cause: bool = Field(
        default=True, description="is whether free-text root causes are accepted. Defaults to true."
    )
    ack_mechanisms: list[Literal["button", "view", "act", "setRootCause"]] = Field(
        default_factory=_default_ack,
        max_length=4,
        description="is what acknowledges an entry: button (explicit ack), view, act (an action is set) or "
        "setRootCause. Defaults to button.",
    )


class AlertConfigSpec(KModel):
    prometheus: PrometheusEndpoint | None = Field(
        default=None,
        description="is the Prometheus-compatible API the evaluator queries. Required for "
        "evaluator-engine metric rules.",
    )
    prometheus_rule: PrometheusRuleTarget = Field(
        default_factory=PrometheusRuleTarget,
        description="is how generated PrometheusRules are labelled. Defaults to no extra labels.",
    )
    defaults: Defaults = Field(
        default_factory=Defaults, description="is the defaults for rules. Defaults to interval 1m, no channels."
    )
    evaluator: EvaluatorSpec = Field(
        default_factory=EvaluatorSpec, description="is the evaluator Deployment. Defaults to one shard, one replica."
    )
    grouping: Grouping = Field(
        default_factory=Grouping, description="is how events group into alerts. Defaults to 5m windows, 1 event."
    )
    silenced_until: Timestamp | None = Field(
        default=None, description="is a time until which every notification of this config is silenced. Optional."
    )
    entries: Entries = Field(
        default_factory=Entries,
        description="is how alert entries are acknowledged and tagged. Defaults to button acknowledgement.",
    )
    silences: list[Silence] = Field(
        default_factory=list, max_length=256, description="is the list of silences. Defaults to none."
    )
    mute_time_intervals: list[MuteTimeInterval] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        json_schema_extra=cel_rules(cel("self.all(m, self.exists_one(n, n.name == m.name))", "names must be unique")),
        description="is recurring times when notifications are muted. Defaults to none.",
    )
    allowed_namespaces: list[
        Annotated[str, StringConstraints(pattern=r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$", max_length=63)]
    ] = Field(
        default_factory=list,
        max_length=256,
        description="is the other namespaces whose rules may reference this config ('*' for all). "
        "Defaults to none (own namespace only).",
    )
    allow_private_channel_addresses: bool = Field(
        default=False,
        description="is true to let channels post to link-local and cloud metadata addresses. Defaults to false.",
    )
    events: EventIngestion = Field(
        default_factory=EventIngestion, description="is event ingestion for event rules. Defaults to disabled."
    )


class ShardStatus(KModel):
    model_config = ConfigDict(extra="ignore")

    index: int = Field(description="is the shard's index.")
    deployment: str = Field(default="", description="is the shard's Deployment.")
    ready_replicas: int = Field(default=0, description="is the shard's ready pods.")
    rules: int = Field(default=0, description="is the rules assigned to the shard.")


class AlertConfigStatus(Status):
    evaluator_ready: bool | None = Field(default=None, description="is whether every shard has a ready pod.")
    rules_assigned: int = Field(default=0, description="is the number of rules referencing this config.")
    shards: list[ShardStatus] = Field(default_factory=list, max_length=64, description="is the per-shard state.")
    granted_namespaces: list[str] = Field(
        default_factory=list,
        description=(
            "are the namespaces besides its own where the evaluator holds a Role and reads rules "
            "(allowedNamespaces; with '*', those holding rules that reference this config)."
        ),
    )
