"""Receiver outages at the notifier: retries past the old budget, what the channel status, Events
and metrics say while it fails and after, superseded repeats, a full queue, in-flight limits."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from klaxon.notify import MemoryStatusSink
from klaxon.notify.metrics import NotifierCollector

from .conftest import NS, Receiver, channel, notification


def hook(url: str, **kw: Any) -> Any:
    return channel({"type": "webhook", "webhook": {"url": url}, **kw})


def scrape(notifier: Any) -> str:
    registry = CollectorRegistry()
    registry.register(NotifierCollector(notifier))
    return generate_latest(registry).decode()


async def test_an_outage_longer_than_the_old_budget_is_ridden_out_and_reported_once(
    make_notifier: Any, receiver: Receiver
) -> None:
    """The old budget was 8 attempts (here ~0.5 s); 1.5 s of 500s then recovery: all delivered."""
    receiver.default = (500, 0)
    sink = MemoryStatusSink()
    notifier = await make_notifier(sink)
    await notifier.set_channel(NS, "hook", hook(receiver.url, retry={"maxBackoff": "100ms"}))
    for i in range(5):
        await notifier.handle(notification(i))
    await asyncio.sleep(1.5)
    assert notifier.outbox.counts() == {"pending": 5} and len(receiver.hits) > 5 * 8
    await asyncio.sleep(0.1)
    st = sink.channels[(NS, "hook")]
    assert st.queue is not None and st.queue.pending == 5 and st.queue.failing_since is not None
    assert st.queue.last_error == "HTTP 500" and st.queue.oldest_pending_time is not None
    (ready,) = st.conditions
    assert (ready.status, ready.reason) == ("False", "DeliveryFailing")
    assert "5 notification(s) waiting" in ready.message and "HTTP 500" in ready.message
    text = scrape(notifier)
    assert f'klaxon_notifications_pending{{channel="hook",namespace="{NS}"}} 5.0' in text
    assert f'klaxon_notification_channel_failing{{channel="hook",namespace="{NS}"}} 1.0' in text

    receiver.default = (200, 0)
    await notifier.wait_idle(5)
    await asyncio.sleep(0.15)
    assert len(receiver.accepted) == 5 and len({h.headers["Idempotency-Key"] for h in receiver.accepted}) == 5
    st = sink.channels[(NS, "hook")]
    assert st.queue is not None and st.queue.pending == 0 and st.queue.failing_since is None
    assert st.conditions[0].status == "True" and st.delivered_count == 5 and st.failed_count == 0
    reasons = [e[3] for e in sink.events]
    assert reasons.count("DeliveryFailing") == 1 and reasons.count("DeliveryRecovered") == 1
    assert "DeliveryFailed" not in reasons
    text = scrape(notifier)
    assert f'klaxon_notifications_delivered_total{{channel="hook",namespace="{NS}"}} 5.0' in text
    assert f'klaxon_notification_channel_failing{{channel="hook",namespace="{NS}"}} 0.0' in text
    assert "klaxon_notification_outbox_on_disk 1.0" in text


async def test_the_outage_is_remembered_across_a_restart(make_notifier: Any, receiver: Receiver, tmp_path: Any) -> None:
    receiver.default = (503, 0)
    path = tmp_path / "o.sqlite"
    sink1 = MemoryStatusSink()
    first = await make_notifier(sink1, path=path)
    await first.set_channel(NS, "hook", hook(receiver.url))
    await first.handle(notification())
    await asyncio.sleep(0.3)
    await first.stop()
    sink2 = MemoryStatusSink()
    second = await make_notifier(sink2, path=path)
    await second.set_channel(NS, "hook", hook(receiver.url))
    await asyncio.sleep(0.3)
    assert [e[3] for e in sink1.events + sink2.events].count("DeliveryFailing") == 1  # one outage, one Event
    receiver.default = (200, 0)
    await second.wait_idle(5)
    await asyncio.sleep(0.15)
    assert [e[3] for e in sink2.events].count("DeliveryRecovered") == 1


async def test_a_repeat_waiting_behind_a_stuck_firing_is_superseded_by_the_resolution(
    make_notifier: Any, receiver: Receiver
) -> None:
    """The firing and the resolution both go, in order; the repeat queued between them says
    nothing the receiver needs."""
    receiver.default = (500, 0)
    notifier = await make_notifier()
    await notifier.set_channel(NS, "hook", hook(receiver.url))
    first = notification()
    await notifier.handle(first)
    await asyncio.sleep(0.1)
    assert await notifier.tick(first.time + timedelta(hours=5)) == 1  # repeatInterval 4h passed
    await notifier.handle(notification(state_from="Firing", state_to="Inactive", time=first.time + timedelta(hours=6)))
    kinds = dict(notifier.outbox.db.execute("SELECT kind, status FROM outbox").fetchall())
    assert kinds == {"firing": "pending", "repeat": "superseded", "resolved": "pending"}
    receiver.default = (200, 0)
    await notifier.wait_idle(5)
    assert [h.json["kind"] for h in receiver.accepted] == ["firing", "resolved"]


async def test_a_full_queue_gives_up_its_oldest_and_says_so(make_notifier: Any, receiver: Receiver) -> None:
    receiver.default = (500, 0)
    sink = MemoryStatusSink()
    notifier = await make_notifier(sink, max_pending_per_channel=3)
    await notifier.set_channel(NS, "hook", hook(receiver.url))
    for i in range(5):
        await notifier.handle(notification(i))
    statuses = dict(notifier.outbox.db.execute("SELECT dedup, status FROM (SELECT json_extract(notification, "
                                                "'$.dedup_key') AS dedup, status FROM outbox)").fetchall())
    assert [statuses[f"api-latency:svc-{i}"] for i in range(5)] == ["failed", "failed", "pending", "pending", "pending"]
    assert notifier.given_up == {(NS, "hook", "queueFull"): 2}
    await asyncio.sleep(0.15)
    st = sink.channels[(NS, "hook")]
    assert st.failed_count == 2 and st.queue is not None and st.queue.pending == 3
    (event,) = [e for e in sink.events if e[3] == "DeliveryFailed"]
    assert "gave up 2 notification(s)" in event[4] and "more than 3 notifications wait" in event[4]
    assert 'reason="queueFull"} 2.0' in scrape(notifier)


async def test_one_delivery_under_way_per_channel_unless_raised(make_notifier: Any, receiver: Receiver) -> None:
    receiver.default = (200, 0.1)
    notifier = await make_notifier()
    await notifier.set_channel(NS, "one", hook(receiver.url + "/one"))
    await notifier.set_channel(NS, "four", hook(receiver.url + "/four", rateLimit={"perMinute": 100000,
                                                                                "maxInFlight": 4}))
    for i in range(8):
        await notifier.handle(notification(i, channels=("one", "four")))
    await notifier.wait_idle(10)

    def most_at_once(path: str) -> int:
        spans = sorted((h.at, h.at + 0.1) for h in receiver.hits if h.path == path)
        return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)

    assert most_at_once("/one") == 1 and 2 <= most_at_once("/four") <= 4


async def test_rows_waiting_for_an_unknown_channel_go_when_it_is_known(
    make_notifier: Any, receiver: Receiver
) -> None:
    notifier = await make_notifier()
    await notifier.handle(notification())  # its channel is not known yet (as right after a restart)
    await asyncio.sleep(0.2)
    assert receiver.hits == [] and notifier.outbox.counts() == {"pending": 1}
    start = time.monotonic()
    await notifier.set_channel(NS, "hook", hook(receiver.url))
    await notifier.wait_idle(5)
    assert len(receiver.accepted) == 1 and time.monotonic() - start < 2.0  # not the 5 s re-check
