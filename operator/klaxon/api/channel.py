"""The NotificationChannel kind: where notifications go. Secrets only by reference."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from .common import (
    DURATION_PATTERN,
    MAX_LIST,
    URL_CONSTRAINTS,
    KModel,
    NoCredentials,
    SecretKeySelector,
    ShortText,
    Status,
    cel,
    cel_rules,
    parse_duration,
)

EmailAddress = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+$", max_length=128)]
# Header names that carry credentials: their values belong in headerSecrets, never inline.
CREDENTIAL_HEADER_PATTERN = r"(?i)(authorization|cookie|token|secret|passw|api-?key|credential|session)"
# A header value on one line: CR, LF and other control characters (tab aside) would split or
# smuggle headers.
HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
HeaderValue = Annotated[str, StringConstraints(pattern=HEADER_VALUE_PATTERN, max_length=1024)]

CHANNEL_TYPES = ("webhook", "slack", "email", "pagerduty", "msteams", "opsgenie", "alertmanager")


CREDENTIAL_HEADER_MESSAGE = (
    "a header that carries credentials (Authorization, Cookie, an API key, a token, a secret) must not be "
    "inline; put its value in a Secret and reference it from webhook.headerSecrets"
)


class Webhook(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.url) != has(self.urlSecret)", "exactly one of webhook.url and webhook.urlSecret must be set"),
        )
    )

    url: Annotated[str, URL_CONSTRAINTS, NoCredentials("webhook.urlSecret or webhook.headerSecrets")] | None = Field(
        default=None,
        description="is the endpoint when it holds no secret. Exactly one of url and urlSecret is required.",
    )
    url_secret: SecretKeySelector | None = Field(
        default=None,
        description="is the Secret key holding the endpoint URL. Exactly one of url and urlSecret is required.",
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        max_length=32,
        description="is extra non-secret headers; credentials (Authorization, Cookie, API keys, tokens) go in "
        "headerSecrets. Defaults to none.",
        json_schema_extra=cel_rules(
            cel(f"self.all(k, !k.matches('{CREDENTIAL_HEADER_PATTERN}'))", CREDENTIAL_HEADER_MESSAGE)
        ),
    )
    header_secrets: dict[HeaderName, SecretKeySelector] = Field(
        default_factory=dict,
        max_length=16,
        description="is headers whose values come from Secrets (e.g. Authorization). Defaults to none.",
    )
    hmac_secret: SecretKeySelector | None = Field(
        default=None,
        description="is the Secret key used to sign the body with HMAC-SHA256 "
        "(header X-Klaxon-Signature: sha256=<hex>). Optional.",
    )


class Slack(KModel):
    webhook_url: SecretKeySelector = Field(description="is the Secret key holding the incoming-webhook URL. Required.")
    channel: ShortText | None = Field(default=None, description="is a channel override. Optional.")
    username: ShortText | None = Field(default=None, description="is a sender name override. Optional.")


class Email(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.username) == has(self.password)",
                "set both email.username and email.password, or neither",
                ".password",
            )
        )
    )

    host: Annotated[str, StringConstraints(max_length=253, pattern=r"^[A-Za-z0-9.\-\[\]:]+$")] = Field(
        description="is the SMTP server's host name. Required."
    )
    port: Annotated[int, Field(ge=1, le=65535)] = Field(default=587, description="is the SMTP port. Defaults to 587.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="is starttls, tls (implicit) or none. Defaults to starttls."
    )
    username: SecretKeySelector | None = Field(
        default=None, description="is the Secret key holding the SMTP user. Optional."
    )
    password: SecretKeySelector | None = Field(
        default=None, description="is the Secret key holding the SMTP password. Optional."
    )
    from_: EmailAddress = Field(alias="from", description="is the sender address. Required.")
    to: list[EmailAddress] = Field(min_length=1, max_length=MAX_LIST, description="is the recipients. Required.")


class PagerDuty(KModel):
    routing_key: SecretKeySelector = Field(description="is the Secret key holding the Events v2 routing key. Required.")
    url: Annotated[str, URL_CONSTRAINTS, NoCredentials("pagerduty.routingKey")] = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        description="is the Events v2 endpoint. Defaults to PagerDuty's.",
    )


class MSTeams(KModel):
    webhook_url: SecretKeySelector = Field(description="is the Secret key holding the Teams webhook URL. Required.")


class Opsgenie(KModel):
    api_key: SecretKeySelector = Field(description="is the Secret key holding the Opsgenie API key. Required.")
    url: Annotated[str, URL_CONSTRAINTS, NoCredentials("opsgenie.apiKey")] = Field(
        default="https://api.opsgenie.com", description="is the API base URL. Defaults to Opsgenie's."
    )
    responders: list[ShortText] = Field(
        default_factory=list, max_length=MAX_LIST, description="is team names to route to. Defaults to none."
    )


class AlertmanagerTarget(KModel):
    url: Annotated[str, URL_CONSTRAINTS, NoCredentials("alertmanager.bearerToken")] = Field(
        description="is the Alertmanager base URL; alerts go to /api/v2/alerts. Required."
    )
    bearer_token: SecretKeySelector | None = Field(
        default=None, description="is the Secret key holding a bearer token. Optional."
    )


class Templates(KModel):
    title: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="is the message title template (Jinja, sandboxed). Defaults to a built-in one."
    )
    body: Annotated[str, StringConstraints(max_length=16384)] | None = Field(
        default=None, description="is the message body template (Jinja, sandboxed). Defaults to a built-in one."
    )


class RateLimit(KModel):
    per_minute: Annotated[int, Field(ge=1, le=100000)] = Field(
        default=60, description="is the most notifications per minute; the rest wait. Defaults to 60."
    )
    max_in_flight: Annotated[int, Field(ge=1, le=16)] = Field(
        default=1,
        description="is how many deliveries to this channel may be under way at once. Delivery is at least "
        "once: a crashed evaluator sends again what was under way (same Idempotency-Key), so at most this "
        "many repeats per crash. Defaults to 1: each delivery is recorded before the next one starts.",
    )


def _duration_between(low: str, high: str) -> tuple[AfterValidator, Any]:
    """Bounds of a Go-style duration, checked alike by pydantic and by CEL on the API server."""

    def check(value: str) -> str:
        if not parse_duration(low) <= parse_duration(value) <= parse_duration(high):
            raise ValueError(f"{value} is out of range (allowed: a duration from {low} to {high})")
        return value

    rule = cel(
        f"duration(self) >= duration('{low}') && duration(self) <= duration('{high}')",
        f"must be a duration from {low} to {high}",
    )
    return AfterValidator(check), Field(json_schema_extra=cel_rules(rule))


_DURATION = StringConstraints(pattern=DURATION_PATTERN, max_length=32)
MaxAge = Annotated[str, _DURATION, *_duration_between("1s", "168h")]
Backoff = Annotated[str, _DURATION, *_duration_between("10ms", "1h")]
AttemptTimeout = Annotated[str, _DURATION, *_duration_between("100ms", "5m")]


class Retry(KModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "duration(self.initialBackoff) <= duration(self.maxBackoff)",
                "retry.initialBackoff must not be longer than retry.maxBackoff",
                ".initialBackoff",
            )
        )
    )

    max_age: MaxAge = Field(
        default="24h",
        description="is how long a notification is retried before it is given up (counted from when it was "
        "queued; a give-up is reported in status, an Event, a metric and the log). From 1s to 168h. "
        "Defaults to 24h.",
    )
    max_backoff: Backoff = Field(
        default="5m", description="is the longest wait between two attempts. Defaults to 5m."
    )
    initial_backoff: Backoff = Field(
        default="1s",
        description="is the wait after the first failed attempt; each further failure doubles it "
        "(with jitter) up to maxBackoff. Defaults to 1s.",
    )
    attempt_timeout: AttemptTimeout = Field(
        default="10s",
        description="is how long one attempt may take before it counts as failed and is retried. Defaults to 10s.",
    )

    @field_validator("initial_backoff")
    @classmethod
    def _backoff_order(cls, value: str, info: ValidationInfo) -> str:
        longest = info.data.get("max_backoff")  # declared first, so known here (unless invalid)
        if longest is not None and parse_duration(value) > parse_duration(longest):
            raise ValueError(
                "retry.initialBackoff must not be longer than retry.maxBackoff "
                f"(allowed: a duration up to maxBackoff, {longest})"
            )
        return value


_TYPE_BLOCK_RULES = tuple(
    cel(
        f"(self.type == '{t}') == has(self.{'msteams' if t == 'msteams' else t})",
        f"type {t} needs exactly the {t} block, and the {t} block needs type {t}",
        f".{t}",
    )
    for t in CHANNEL_TYPES
)


class NotificationChannelSpec(KModel):
    model_config = ConfigDict(json_schema_extra=cel_rules(*_TYPE_BLOCK_RULES))

    type: Literal["webhook", "slack", "email", "pagerduty", "msteams", "opsgenie", "alertmanager"] = Field(
        description="is the channel type; the block of the same name configures it. Required."
    )
    webhook: Webhook | None = Field(
        default=None, description="is the webhook configuration. Required when type is webhook."
    )
    slack: Slack | None = Field(default=None, description="is the Slack configuration. Required when type is slack.")
    email: Email | None = Field(default=None, description="is the email configuration. Required when type is email.")
    pagerduty: PagerDuty | None = Field(
        default=None, description="is the PagerDuty configuration. Required when type is pagerduty."
    )
    msteams: MSTeams | None = Field(
        default=None, description="is the Microsoft Teams configuration. Required when type is msteams."
    )
    opsgenie: Opsgenie | None = Field(
        default=None, description="is the Opsgenie configuration. Required when type is opsgenie."
    )
    alertmanager: AlertmanagerTarget | None = Field(
        default=None, description="is the Alertmanager configuration. Required when type is alertmanager."
    )
    templates: Templates = Field(
        default_factory=Templates, description="is message templates. Defaults to built-in ones."
    )
    rate_limit: RateLimit = Field(
        default_factory=RateLimit, description="is the delivery rate limit. Defaults to 60 per minute."
    )
    send_resolved: bool = Field(default=True, description="is whether resolutions are sent here. Defaults to true.")
    retry: Retry = Field(
        default_factory=Retry,
        description="is how failed deliveries are retried: with exponential backoff and jitter until delivered, "
        "superseded or older than maxAge; answers that retrying cannot fix (HTTP 4xx other than 408, 425 "
        "and 429) fail at once. Defaults to retrying for 24h.",
    )


class Delivery(KModel):
    model_config = ConfigDict(extra="ignore")

    time: datetime | None = Field(default=None, description="is when the delivery was attempted.")
    outcome: Literal["Delivered", "Failed"] | None = Field(default=None, description="is its outcome.")
    message: Annotated[str, StringConstraints(max_length=1024)] = Field(default="", description="is detail.")


class DeliveryQueue(KModel):
    model_config = ConfigDict(extra="ignore")

    pending: int = Field(default=0, description="is how many notifications wait for delivery (being retried).")
    oldest_pending_time: datetime | None = Field(
        default=None, description="is when the oldest waiting notification was queued; unset when none waits."
    )
    failing_since: datetime | None = Field(
        default=None,
        description="is when deliveries to this channel began to fail; unset while they succeed.",
    )
    last_error: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="", description="is the error of the last failed attempt (never a secret)."
    )


class NotificationChannelStatus(Status):
    last_delivery: Delivery | None = Field(default=None, description="is the last delivery attempt.")
    last_test_delivery: Delivery | None = Field(default=None, description="is the last test delivery.")
    delivered_count: int = Field(default=0, description="is notifications delivered.")
    failed_count: int = Field(
        default=0,
        description="is notifications given up: not delivered within retry.maxAge, refused by the receiver, "
        "or dropped as the oldest of a full queue.",
    )
    queue: DeliveryQueue | None = Field(
        default=None,
        description="is the evaluator's delivery queue for this channel: what waits, since when, and why.",
    )


def delivery_failing(status: Mapping[str, Any] | None, now: datetime | None = None) -> str | None:
    """Why a channel's deliveries are failing (for its Ready condition), from ``status.queue`` as the
    evaluator writes it; None while they are not. Never holds a secret: lastError is redacted."""
    queue = (status or {}).get("queue") or {}
    since = queue.get("failingSince")
    if not since:
        return None
    pending = int(queue.get("pending") or 0)
    text = f"deliveries failing since {since}"
    if pending:
        oldest = queue.get("oldestPendingTime")
        text += f"; {pending} notification(s) waiting"
        if oldest and now is not None:
            try:
                age = now - datetime.fromisoformat(str(oldest).replace("Z", "+00:00"))
                text += f", the oldest for {int(age.total_seconds())}s"
            except ValueError:
                pass
    if queue.get("lastError"):
        text += f"; last error: {queue['lastError']}"
    return text
