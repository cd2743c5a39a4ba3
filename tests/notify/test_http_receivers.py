"""Each HTTP driver against a loopback receiver: the documented payload shapes and the signature."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from .conftest import NS, Receiver, channel, notification

REF = {"name": "creds"}


async def deliver(make_notifier: Any, receiver: Receiver, spec: dict[str, Any], *ns: Any) -> Any:
    notifier = await make_notifier()
    await notifier.set_channel(NS, "hook", channel(spec))
    for n in ns or (notification(),):
        await notifier.handle(n)
        await notifier.wait_idle(5)
    await notifier.stop()
    return notifier


async def test_webhook_json_headers_and_hmac(make_notifier: Any, receiver: Receiver) -> None:
    spec = {
        "type": "webhook",
        "webhook": {
            "url": receiver.url + "/klaxon",
            "headers": {"X-Team": "platform"},
            "headerSecrets": {"Authorization": {**REF, "key": "token"}},
            "hmacSecret": {**REF, "key": "hmac"},
        },
    }
    await deliver(make_notifier, receiver, spec)
    [hit] = receiver.hits
    assert hit.path == "/klaxon" and hit.method == "POST"
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["X-Team"] == "platform"
    assert hit.headers["Authorization"] == "bearer-secret-token-19d2e4"
    expected = "sha256=" + hmac.new(b"hmac-secret-value-7f3a9c", hit.raw, hashlib.sha256).hexdigest()
    assert hit.headers["X-Klaxon-Signature"] == expected
    body = hit.json
    assert body["status"] == "firing" and body["kind"] == "firing"
    assert body["rule"] == {"namespace": NS, "name": "api-latency"}
    assert body["dedupKey"] == "api-latency:svc-0" and body["episodeId"] == "ep-0"
    assert body["labels"] == {"service": "svc-0"} and body["level"] == "critical" and body["value"] == 0.75
    assert body["idempotencyKey"] == hit.headers["Idempotency-Key"]
    assert body["title"] == "[FIRING] api-latency (critical)"


async def test_slack_incoming_webhook(make_notifier: Any, receiver: Receiver, secrets: Any) -> None:
    secrets.secrets[(NS, "creds")]["slack"] = receiver.url + "/services/T000/B000/XXXX"
    spec = {
        "type": "slack",
        "slack": {"webhookUrl": {**REF, "key": "slack"}, "channel": "#oncall", "username": "klaxon"},
        "templates": {"title": "[{{ state }}] {{ rule }} ({{ level or severity }})"},
    }
    await deliver(make_notifier, receiver, spec)
    [hit] = receiver.hits
    assert hit.path == "/services/T000/B000/XXXX"
    body = hit.json
    # https://api.slack.com/messaging/webhooks: text (required fallback), attachments, channel/username
    assert body["text"] == "[Firing] api-latency (critical)"
    assert body["channel"] == "#oncall" and body["username"] == "klaxon"
    [att] = body["attachments"]
    assert att["color"].startswith("#") and att["title"] == body["text"] and "api-latency" in att["text"]


async def test_pagerduty_events_v2_trigger_then_resolve(make_notifier: Any, receiver: Receiver) -> None:
    spec = {
        "type": "pagerduty",
        "pagerduty": {"routingKey": {**REF, "key": "routing"}, "url": receiver.url + "/v2/enqueue"},
    }
    firing = notification()
    resolved = notification(state_from="Recovering", state_to="Inactive")
    await deliver(make_notifier, receiver, spec, firing, resolved)
    trig, res = (h.json for h in receiver.hits)
    assert receiver.hits[0].path == "/v2/enqueue"
    assert trig["routing_key"] == "pd-routing-key-secret-55aa" and trig["event_action"] == "trigger"
    assert trig["dedup_key"] == f"{NS}/api-latency/api-latency:svc-0" and len(trig["dedup_key"]) <= 255
    p = trig["payload"]
    assert set(p) >= {"summary", "source", "severity", "timestamp", "custom_details"}
    assert p["severity"] in {"critical", "error", "warning", "info"} and p["severity"] == "critical"
    assert 0 < len(p["summary"]) <= 1024
    assert res == {
        "routing_key": "pd-routing-key-secret-55aa",
        "event_action": "resolve",
        "dedup_key": trig["dedup_key"],
    }


async def test_teams_adaptive_card(make_notifier: Any, receiver: Receiver, secrets: Any) -> None:
    secrets.secrets[(NS, "creds")]["teams"] = receiver.url + "/workflows/abc"
    await deliver(
        make_notifier, receiver, {"type": "msteams", "msteams": {"webhookUrl": {**REF, "key": "teams"}}}
    )
    body = receiver.hits[0].json
    assert body["type"] == "message"
    [att] = body["attachments"]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] and card["$schema"].startswith("http")
    assert card["body"][0]["type"] == "TextBlock" and "api-latency" in card["body"][0]["text"]
    assert {"title": "service", "value": "svc-0"} in card["body"][2]["facts"]


async def test_opsgenie_create_and_close(make_notifier: Any, receiver: Receiver) -> None:
    spec = {
        "type": "opsgenie",
        "opsgenie": {"apiKey": {**REF, "key": "genie"}, "url": receiver.url, "responders": ["sre"]},
    }
    await deliver(
        make_notifier, receiver, spec, notification(), notification(state_from="Firing", state_to="Inactive")
    )
    create, close = receiver.hits
    assert (
        create.path == "/v2/alerts"
        and create.headers["Authorization"] == "GenieKey opsgenie-api-key-secret-66bb"
    )
    body = create.json
    assert len(body["message"]) <= 130 and body["alias"] == f"{NS}/api-latency/api-latency:svc-0"
    assert body["responders"] == [{"name": "sre", "type": "team"}] and body["priority"] == "P1"
    assert all(isinstance(v, str) for v in body["details"].values())
    assert close.path == f"/v2/alerts/{NS}/api-latency/api-latency:svc-0/close" or close.path.endswith(
        "/close"
    )
    assert close.query == "identifierType=alias" and close.json["source"] == "Klaxon"


async def test_send_resolved_false_on_channel_skips_resolution(
    make_notifier: Any, receiver: Receiver
) -> None:
    spec = {"type": "webhook", "webhook": {"url": receiver.url}, "sendResolved": False}
    await deliver(
        make_notifier, receiver, spec, notification(), notification(state_from="Firing", state_to="Inactive")
    )
    assert [h.json["status"] for h in receiver.hits] == ["firing"]


async def test_every_http_driver_repeats_a_notification_under_its_key_and_dedup_field(
    make_notifier: Any, receiver: Receiver, secrets: Any
) -> None:
    """At-least-once: a retried (or, after a crash, re-sent) notification carries the same
    Idempotency-Key and the same service dedup field, so the receiver can drop the repeat:
    PagerDuty dedup_key, Opsgenie alias, Alertmanager's label set (the webhook: the key in the body).
    The next notification of the same alert gets a new key but the same dedup field."""
    secrets.secrets[(NS, "creds")]["slack"] = receiver.url + "/slack"
    secrets.secrets[(NS, "creds")]["teams"] = receiver.url + "/msteams"
    specs: dict[str, dict[str, Any]] = {
        "webhook": {"webhook": {"url": receiver.url + "/webhook"}},
        "slack": {"slack": {"webhookUrl": {**REF, "key": "slack"}}},
        "msteams": {"msteams": {"webhookUrl": {**REF, "key": "teams"}}},
        "pagerduty": {"pagerduty": {"routingKey": {**REF, "key": "routing"}, "url": receiver.url + "/pagerduty"}},
        "opsgenie": {"opsgenie": {"apiKey": {**REF, "key": "genie"}, "url": receiver.url + "/opsgenie"}},
        "alertmanager": {"alertmanager": {"url": receiver.url + "/alertmanager"}},
    }
    dedup_field = {
        "webhook": lambda b: b["dedupKey"],
        "pagerduty": lambda b: b["dedup_key"],
        "opsgenie": lambda b: b.get("alias"),
        "alertmanager": lambda b: sorted(b[0]["labels"].items()),
    }
    notifier = await make_notifier()
    for kind, block in specs.items():
        await notifier.set_channel(NS, kind, channel({"type": kind, **block}))
    receiver.plan = [(500, 0)] * len(specs)  # every first attempt fails: each is sent again
    firing = notification(channels=tuple(specs))
    await notifier.handle(firing)
    await notifier.wait_idle(10)
    await notifier.handle(notification(channels=tuple(specs), state_from="Firing", state_to="Inactive"))
    await notifier.wait_idle(10)
    for kind in specs:
        hits = [h for h in receiver.hits if h.path.split("/")[1] == kind]
        assert len(hits) == 3, (kind, [h.path for h in hits])  # firing twice (500, then 200), resolved once
        first, again, resolved = hits
        assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] != ""
        assert first.raw == again.raw  # the very same request
        assert resolved.headers["Idempotency-Key"] != first.headers["Idempotency-Key"]
        if kind in dedup_field:
            field = dedup_field[kind]
            if kind == "opsgenie":  # closed by alias, in the path
                assert field(first.json) == f"{NS}/api-latency/api-latency:svc-0" and resolved.path.endswith("/close")
            else:
                assert field(first.json) == field(resolved.json), kind
