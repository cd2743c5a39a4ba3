"""A channel's Ready condition reads its URL's host with urllib.parse, as delivery does: a query,
a fragment, a port or user info never hides a refused address from the check."""

from __future__ import annotations

from typing import Any

import pytest

from klaxon.notify.readiness import url_host

from .conftest import NS, channel


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://hooks.example.com/x", "hooks.example.com"),
        ("https://Hooks.Example.com:8443/x?y=1", "hooks.example.com"),
        ("http://169.254.169.254?x=1", "169.254.169.254"),
        ("http://169.254.169.254#x", "169.254.169.254"),
        ("http://user:pw@[fe80::1]:8080/p", "fe80::1"),
        ("http://[::1]/x", "::1"),
    ],
)
def test_url_host(url: str, host: str) -> None:
    assert url_host(url) == host


@pytest.mark.parametrize("url", ["http://169.254.169.254?x=1", "http://169.254.169.254#frag", "http://[fe80::1]"])
async def test_a_refused_address_behind_a_query_or_fragment_is_not_ready(make_notifier: Any, url: str) -> None:
    notifier = await make_notifier()
    cond = await notifier.set_channel(NS, "hook", channel({"type": "webhook", "webhook": {"url": url}}))
    assert (cond.status, cond.reason) == ("False", "AddressNotAllowed")


async def test_an_unchanged_condition_keeps_its_transition_time(make_notifier: Any) -> None:
    notifier = await make_notifier()
    spec = channel({"type": "webhook", "webhook": {"url": "http://127.0.0.1:9/x?y=1"}})
    first = await notifier.set_channel(NS, "hook", spec)
    again = await notifier.set_channel(NS, "hook", spec)
    assert first.status == "True" and again.last_transition_time == first.last_transition_time
