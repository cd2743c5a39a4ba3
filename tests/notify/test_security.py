"""SSRF guard, secret redaction and the template sandbox."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.notify import MemoryStatusSink
from klaxon.notify.redact import RedactingFilter, Redactor
from klaxon.notify.ssrf import BlockedAddress, address_problem, check_host
from klaxon.notify.templates import render

from .conftest import NS, SECRETS, Receiver, channel, notification


@pytest.mark.parametrize(
    "addr", ["169.254.169.254", "169.254.10.1", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"]
)
def test_link_local_and_metadata_addresses_are_refused(addr: str) -> None:
    assert address_problem(addr) is not None


@pytest.mark.parametrize("addr", ["127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "8.8.8.8"])
def test_other_addresses_are_allowed(addr: str) -> None:
    assert address_problem(addr) is None


async def test_metadata_host_name_refused_without_resolving() -> None:
    with pytest.raises(BlockedAddress):
        await check_host("metadata.google.internal")
    await check_host("localhost")  # loopback stays allowed


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]:8080/x",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
async def test_channel_to_metadata_is_refused_unless_allowed(make_notifier: Any, url: str) -> None:
    sink = MemoryStatusSink()
    notifier = await make_notifier(sink)
    cond = await notifier.set_channel(NS, "hook", channel({"type": "webhook", "webhook": {"url": url}}))
    assert cond.status == "False" and cond.reason == "AddressNotAllowed"
    await notifier.handle(notification())
    await notifier.wait_idle(5)
    assert notifier.outbox.counts() == {"failed": 1}  # refused at once, not retried
    await asyncio.sleep(0.15)
    st = sink.channels[(NS, "hook")]
    assert st.failed_count == 1 and st.last_delivery is not None
    assert "destination refused" in st.last_delivery.message


async def test_alertconfig_can_allow_private_addresses(make_notifier: Any) -> None:
    notifier = await make_notifier()
    await notifier.set_config(
        NS, "default", AlertConfigSpec.model_validate({"allowPrivateChannelAddresses": True})
    )
    cond = await notifier.set_channel(
        NS,
        "hook",
        channel(
            {
                "type": "webhook",
                "webhook": {"url": "http://169.254.169.254:9/"},
                "retry": {"attemptTimeout": "200ms"},
            }
        ),
    )
    assert cond.status == "True"
    await notifier.handle(notification())
    await asyncio.sleep(0.3)
    rows = notifier.outbox.db.execute("SELECT message FROM outbox").fetchall()
    assert rows and "destination refused" not in rows[0][0]  # it tried to connect


async def test_secrets_never_in_logs_events_or_status(
    make_notifier: Any, receiver: Receiver, secrets: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every channel type with secrets, failing in every way, at DEBUG: no secret value escapes."""
    secret_url = receiver.url + "/services/T0/B0/slack-path-secret-99ee"
    secrets.secrets[(NS, "creds")]["slack"] = secret_url
    secrets.secrets[(NS, "creds")]["dead"] = "http://127.0.0.1:9/dead-url-secret-aa11"
    values = [v for v in secrets.secrets[(NS, "creds")].values() if len(v) > 8]
    receiver.default = (500, 0)
    sink = MemoryStatusSink()
    ref = {"name": "creds"}
    retry = {"maxAge": "1s", "initialBackoff": "20ms", "maxBackoff": "100ms"}  # every failure ends in a give-up
    with caplog.at_level(logging.DEBUG):
        notifier = await make_notifier(sink)
        await notifier.set_channel(
            NS,
            "hook",
            channel(
                {
                    "type": "webhook",
                    "webhook": {
                        "urlSecret": {**ref, "key": "dead"},
                        "headerSecrets": {"Authorization": {**ref, "key": "token"}},
                        "hmacSecret": {**ref, "key": "hmac"},
                    },
                    "retry": retry,
                }
            ),
        )
        await notifier.set_channel(
            NS,
            "slack",
            channel({"type": "slack", "slack": {"webhookUrl": {**ref, "key": "slack"}}, "retry": retry}),
        )
        await notifier.set_channel(
            NS,
            "pd",
            channel(
                {
                    "type": "pagerduty",
                    "pagerduty": {
                        "routingKey": {**ref, "key": "routing"},
                        "url": receiver.url + "/v2/enqueue",
                    },
                    "retry": retry,
                }
            ),
        )
        await notifier.set_channel(
            NS,
            "og",
            channel(
                {
                    "type": "opsgenie",
                    "opsgenie": {"apiKey": {**ref, "key": "genie"}, "url": receiver.url},
                    "retry": retry,
                }
            ),
        )
        await notifier.handle(notification(channels=("hook", "slack", "pd", "og")))
        await notifier.wait_idle(10)
        await asyncio.sleep(0.15)
        logging.getLogger("klaxon.notify").info("direct log of %s", secret_url)  # even this is masked
    assert len(receiver.hits) >= 3  # the secrets really were used on the wire
    outputs = caplog.text + repr(sink.channels) + repr(sink.events) + repr(sink.rules)
    assert "gave up" in caplog.text and sink.events
    for v in [*values, secret_url]:
        assert v not in outputs, v
    assert "***" in caplog.text


def test_redacting_filter_masks_exceptions() -> None:
    r = Redactor()
    r.add("super-secret-token")
    rec = logging.LogRecord(
        "klaxon.notify", logging.ERROR, __file__, 1, "boom %s", ("super-secret-token",), None
    )
    try:
        raise RuntimeError("failed with super-secret-token")
    except RuntimeError:
        import sys

        rec.exc_info = sys.exc_info()
    RedactingFilter(r).filter(rec)
    assert "super-secret-token" not in rec.getMessage() and "***" in rec.getMessage()
    assert SECRETS  # the fixture's values are what the integration test scans for


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ labels.__class__ }}",
        "{{ rule.__init__.__globals__ }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ labels.update({'x': 1}) }}",
    ],
)
def test_template_sandbox_blocks_internals(source: str) -> None:
    text, note = render(source, "fallback {{ rule }}", {"rule": "r", "labels": {"a": "b"}})
    assert text == "fallback r" and note is not None and "built-in" in note


def test_template_renders_plain_data() -> None:
    text, note = render(
        "{{ rule | upper }} {{ labels.a }} {{ missing }}", "x", {"rule": "r", "labels": {"a": "b"}}
    )
    assert (text, note) == ("R b ", None)
