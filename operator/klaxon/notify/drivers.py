"""Channel drivers: build each service's documented payload (pure), then send it (I/O).

Payload shapes follow the services' documentation: Slack incoming webhooks (``text`` +
``attachments``), PagerDuty Events API v2 (``routing_key``, ``event_action``, ``dedup_key``,
``payload{summary,source,severity}``), Microsoft Teams Workflows (an Adaptive Card in a
``message`` attachment), Opsgenie Alert API v2 (create; close by alias), Alertmanager
``POST /api/v2/alerts``. Every request carries ``Idempotency-Key`` (email: ``Message-ID``) so a
receiver can drop the duplicate a crash between send and acknowledgement may cause.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import smtplib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from .. import __version__
from ..api.channel import NotificationChannelSpec
from ..api.common import SecretKeySelector
from .model import Notification
from .policy import Kind
from .ssrf import BlockedAddress, check_host
from .templates import DEFAULT_BODY, DEFAULT_TITLE, context, render

SecretGetter = Callable[[SecretKeySelector], Awaitable[str]]
USER_AGENT = f"klaxon/{__version__}"
SIGNATURE_HEADER = "X-Klaxon-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_COLORS = {
    "resolved": "#2eb886",
    "test": "#439fe0",
    "critical": "#d00000",
    "warning": "#daa038",
    "info": "#439fe0",
}


class DeliveryError(Exception):
    """A failed delivery; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class HttpRequest:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


@dataclass
class SmtpJob:
    host: str
    port: int
    security: str
    username: str | None
    password: str | None
    message: EmailMessage


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    notes: tuple[str, ...]
    ctx: dict[str, Any]


def render_message(spec: NotificationChannelSpec, n: Notification, kind: Kind) -> Rendered:
    ctx = context(n, kind)
    title, note1 = render(spec.templates.title, DEFAULT_TITLE, ctx)
    body, note2 = render(spec.templates.body, DEFAULT_BODY, ctx)
    return Rendered(title.strip(), body, tuple(x for x in (note1, note2) if x), ctx)


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str).encode()


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` HMAC-SHA256 of the exact body bytes (as GitHub's X-Hub-Signature-256)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _color(m: Rendered) -> str:
    status = m.ctx["status"]
    return _COLORS.get(status if status != "firing" else str(m.ctx["level"] or m.ctx["severity"]), "#daa038")


def webhook_payload(n: Notification, kind: Kind, key: str, m: Rendered) -> dict[str, Any]:
    return {
        "version": "1",
        "idempotencyKey": key,
        "status": m.ctx["status"],
        "kind": kind,
        "rule": {"namespace": n.rule_namespace, "name": n.rule_name},
        "dedupKey": n.dedup_key,
        "episodeId": n.episode_id,
        "state": {"from": n.state_from, "to": n.state_to},
        "level": n.level,
        "severity": n.severity,
        "value": n.value,
        "time": n.time.isoformat(),
        "labels": dict(n.labels),
        "annotations": dict(n.annotations),
        "title": m.title,
        "body": m.body,
    }


def slack_payload(spec: NotificationChannelSpec, m: Rendered) -> dict[str, Any]:
    assert spec.slack is not None
    data: dict[str, Any] = {
        "text": m.title,
        "attachments": [
            {
                "color": _color(m),
                "title": m.title,
                "text": m.body,
                "fallback": m.title,
                "footer": "Klaxon",
                "mrkdwn_in": ["text"],
            }
        ],
    }
    if spec.slack.channel:
        data["channel"] = spec.slack.channel
    if spec.slack.username:
        data["username"] = spec.slack.username
    return data


_PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def pagerduty_dedup_key(n: Notification) -> str:
    """PagerDuty's dedup_key (≤255 chars): stable per alert instance so resolve finds trigger."""
    key = f"{n.rule_namespace}/{n.rule_name}/{n.dedup_key}"
    return key if len(key) <= 255 else key[:190] + "#" + hashlib.sha256(key.encode()).hexdigest()[:64]


def pagerduty_payload(routing_key: str, n: Notification, kind: Kind, m: Rendered) -> dict[str, Any]:
    if kind == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": pagerduty_dedup_key(n)}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": pagerduty_dedup_key(n),
        "client": "Klaxon",
        "payload": {
            "summary": m.title[:1024] or n.rule_name,
            "source": f"klaxon/{n.rule_namespace}/{n.rule_name}",
            "severity": _PD_SEVERITY.get(n.level or n.severity, "error"),
            "timestamp": n.time.isoformat(),
            "component": n.labels.get("component", n.rule_name),
            "group": n.rule_namespace,
            "class": kind,
            "custom_details": {
                "body": m.body,
                "labels": dict(n.labels),
                "annotations": dict(n.annotations),
                "value": n.value,
                "level": n.level,
                "dedupKey": n.dedup_key,
            },
        },
    }


def teams_payload(n: Notification, m: Rendered) -> dict[str, Any]:
    facts = [{"title": k, "value": str(v)} for k, v in sorted(n.labels.items())]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": m.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "color": "Good" if m.ctx["status"] == "resolved" else "Attention",
            },
            {"type": "TextBlock", "text": m.body, "wrap": True},
            {"type": "FactSet", "facts": facts},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


_OG_PRIORITY = {"critical": "P1", "warning": "P3", "info": "P5"}


def opsgenie_request(
    base: str, api_key: str, responders: list[str], n: Notification, kind: Kind, m: Rendered
) -> HttpRequest:
    alias = f"{n.rule_namespace}/{n.rule_name}/{n.dedup_key}"[:512]
    headers = {"Authorization": f"GenieKey {api_key}"}
    if kind == "resolved":
        url = f"{base.rstrip('/')}/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias"
        return HttpRequest(url, _json({"source": "Klaxon", "note": m.body[:25000]}), headers)
    body = {
        "message": m.title[:130] or n.rule_name[:130],
        "alias": alias,
        "description": m.body[:15000],
        "responders": [{"name": r, "type": "team"} for r in responders],
        "tags": [t for t in (n.severity, n.level, n.rule_namespace) if t][:20],
        "details": {k: str(v)[:8000] for k, v in n.labels.items()},
        "entity": n.rule_name[:512],
        "source": "Klaxon",
        "priority": _OG_PRIORITY.get(n.level or n.severity, "P3"),
    }
    return HttpRequest(f"{base.rstrip('/')}/v2/alerts", _json(body), headers)


def alertmanager_payload(n: Notification, kind: Kind, m: Rendered) -> list[dict[str, Any]]:
    labels = {k: str(v) for k, v in n.labels.items() if _LABEL_NAME.match(k)}
    labels.update(alertname=n.rule_name, namespace=n.rule_namespace, severity=n.severity)
    if n.level:
        labels["level"] = n.level
    annotations = {k: str(v) for k, v in n.annotations.items()}
    annotations.setdefault("summary", m.title)
    annotations.setdefault("description", m.body)
    annotations["dedup_key"] = n.dedup_key
    alert: dict[str, Any] = {"labels": labels, "annotations": annotations, "generatorURL": ""}
    if kind == "resolved":
        alert["endsAt"] = n.time.isoformat()
    else:
        alert["startsAt"] = n.time.isoformat()
    return [alert]


def email_message(spec: NotificationChannelSpec, key: str, m: Rendered) -> EmailMessage:
    assert spec.email is not None
    msg = EmailMessage()
    msg["From"] = spec.email.from_
    msg["To"] = ", ".join(spec.email.to)
    msg["Subject"] = m.title.replace("\n", " ")[:998]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{key}@klaxon.dev>"
    msg["X-Klaxon-Idempotency-Key"] = key
    msg.set_content(m.body)
    return msg


async def prepare(
    spec: NotificationChannelSpec, secret: SecretGetter, n: Notification, kind: Kind, key: str
) -> HttpRequest | SmtpJob:
    """The wire request for one delivery; secrets are fetched through ``secret``."""
    m = render_message(spec, n, kind)
    base = {IDEMPOTENCY_HEADER: key, "User-Agent": USER_AGENT, "Content-Type": "application/json"}
    req: HttpRequest
    if spec.type == "webhook":
        wh = spec.webhook
        assert wh is not None
        url = wh.url if wh.url is not None else await secret(wh.url_secret)  # type: ignore[arg-type]
        body = _json(webhook_payload(n, kind, key, m))
        headers = {**base, **wh.headers}
        for name, ref in wh.header_secrets.items():
            headers[name] = await secret(ref)
        if wh.hmac_secret is not None:
            headers[SIGNATURE_HEADER] = sign(await secret(wh.hmac_secret), body)
        return HttpRequest(url, body, headers)
    if spec.type == "slack":
        assert spec.slack is not None
        req = HttpRequest(await secret(spec.slack.webhook_url), _json(slack_payload(spec, m)))
    elif spec.type == "msteams":
        assert spec.msteams is not None
        req = HttpRequest(await secret(spec.msteams.webhook_url), _json(teams_payload(n, m)))
    elif spec.type == "pagerduty":
        assert spec.pagerduty is not None
        routing = await secret(spec.pagerduty.routing_key)
        req = HttpRequest(spec.pagerduty.url, _json(pagerduty_payload(routing, n, kind, m)))
    elif spec.type == "opsgenie":
        assert spec.opsgenie is not None
        req = opsgenie_request(
            spec.opsgenie.url, await secret(spec.opsgenie.api_key), spec.opsgenie.responders, n, kind, m
        )
    elif spec.type == "alertmanager":
        assert spec.alertmanager is not None
        req = HttpRequest(
            spec.alertmanager.url.rstrip("/") + "/api/v2/alerts", _json(alertmanager_payload(n, kind, m))
        )
        if spec.alertmanager.bearer_token is not None:
            req.headers["Authorization"] = f"Bearer {await secret(spec.alertmanager.bearer_token)}"
    elif spec.type == "email":
        em = spec.email
        assert em is not None
        user = await secret(em.username) if em.username else None
        password = await secret(em.password) if em.password else None
        return SmtpJob(em.host, em.port, em.security, user, password, email_message(spec, key, m))
    else:  # pragma: no cover - the model's Literal rules it out
        raise DeliveryError(f"unsupported channel type {spec.type}", retryable=False)
    req.headers = {**base, **req.headers}
    return req


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def send_http(session: aiohttp.ClientSession, req: HttpRequest, timeout: float, guard: bool) -> str:
    """Send one request; raise ``DeliveryError`` (never quoting the URL, which may be secret)."""
    host, port = _host_port(req.url)
    if guard:
        try:
            await check_host(host, port)
        except BlockedAddress as exc:
            raise DeliveryError(str(exc), retryable=False) from None
    try:
        async with session.request(
            req.method,
            req.url,
            data=req.body,
            headers=req.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as resp:
            await resp.read()
            status = resp.status
    except BlockedAddress as exc:
        raise DeliveryError(str(exc), retryable=False) from None
    except TimeoutError:
        raise DeliveryError(f"timed out after {timeout:g}s", retryable=True) from None
    except aiohttp.ClientConnectorError as exc:
        raise DeliveryError(
            f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})", retryable=True
        ) from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"HTTP client error ({type(exc).__name__})", retryable=True) from None
    if 200 <= status < 300:
        return f"HTTP {status}"
    raise DeliveryError(f"HTTP {status}", retryable=status in (408, 425, 429) or status >= 500)


def _connect_pinned(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers (all vetted beforehand)."""
    last: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            last = exc
    raise last or OSError("no address to connect to")


class _PinnedSMTP(smtplib.SMTP):
    """SMTP to addresses vetted beforehand (``pinned``; empty: by name, unguarded); ``server``
    still names the server for EHLO, STARTTLS's SNI and the certificate check (``_host``)."""

    def __init__(self, server: str, pinned: list[str], timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._host = server
        self.pinned = pinned

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        if self.pinned:
            return _connect_pinned(self.pinned, port, timeout)
        return super()._get_socket(host, port, timeout)  # type: ignore[misc, no-any-return]


class _PinnedSMTPSSL(smtplib.SMTP_SSL):
    def __init__(self, server: str, pinned: list[str], timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(timeout=timeout, context=context)
        self._host = server
        self.pinned = pinned

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        if self.pinned:
            raw = _connect_pinned(self.pinned, port, timeout)
            return self.context.wrap_socket(raw, server_hostname=self._host)
        return super()._get_socket(host, port, timeout)  # type: ignore[misc, no-any-return]


def _smtp_send(job: SmtpJob, timeout: float, tls: ssl.SSLContext, addresses: list[str] | None = None) -> None:
    """Send ``job``; with ``addresses``, connect to one of them (the vetted addresses of ``job.host``)."""
    client: smtplib.SMTP
    pinned = list(addresses or [])
    if job.security == "tls":
        client = _PinnedSMTPSSL(job.host, pinned, timeout, tls)
    else:
        client = _PinnedSMTP(job.host, pinned, timeout)
    code, _ = client.connect(job.host, job.port)
    if code != 220:
        client.close()
        raise smtplib.SMTPConnectError(code, b"unexpected greeting")
    with client:
        client.ehlo()
        if job.security == "starttls":
            client.starttls(context=tls)
            client.ehlo()
        if job.username is not None and job.password is not None:
            try:
                client.login(job.username, job.password)
            except smtplib.SMTPServerDisconnected as exc:  # some servers hang up on a bad login
                raise smtplib.SMTPAuthenticationError(
                    535, b"server closed the connection during AUTH"
                ) from exc
        client.send_message(job.message)


async def send_email(job: SmtpJob, timeout: float, tls: ssl.SSLContext, guard: bool) -> str:
    addresses = None
    if guard:
        try:
            addresses = await check_host(job.host, job.port)
        except BlockedAddress as exc:
            raise DeliveryError(str(exc), retryable=False) from None
        if not addresses:  # never fall back to a lookup of our own: that one would go unchecked
            raise DeliveryError("SMTP host did not resolve", retryable=True)
    try:
        await asyncio.to_thread(_smtp_send, job, timeout, tls, addresses)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP authentication failed ({exc.smtp_code})", retryable=False) from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError("SMTP server refused every recipient", retryable=False) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP error {exc.smtp_code}", retryable=exc.smtp_code < 500) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP connection failed ({type(exc).__name__})", retryable=True) from None
    return "accepted by SMTP server"
