"""Delivery semantics: retries with backoff until delivered or older than retry.maxAge, at least
once with one Idempotency-Key across recoveries and restarts, rate limits, channel status, test
deliveries."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from klaxon.notify import TEST_ANNOTATION, MemoryStatusSink, Notifier, RetryPolicy
from klaxon.notify.outbox import Outbox

from .conftest import NS, Receiver, channel, notification

ROOT = Path(__file__).resolve().parents[2]


def hook(url: str, **kw: Any) -> Any:
    return channel({"type": "webhook", "webhook": {"url": url}, **kw})


async def test_http_500_then_recovery_delivers_once_under_one_key(make_notifier: Any, receiver: Receiver) -> None:
    receiver.plan = [(500, 0), (503, 0), (500, 0)]
    sink = MemoryStatusSink()
    notifier = await make_notifier(sink)
    await notifier.set_channel(NS, "hook", hook(receiver.url))
    await notifier.handle(notification())
    await notifier.wait_idle(5)
    assert len(receiver.hits) == 4 and len(receiver.accepted) == 1
    assert len({h.headers["Idempotency-Key"] for h in receiver.hits}) == 1  # same key on every retry
    await asyncio.sleep(0.15)
    st = sink.channels[(NS, "hook")]
    assert st.delivered_count == 1 and st.failed_count == 0
    assert st.last_delivery is not None and st.last_delivery.outcome == "Delivered"


async def test_timeout_is_retried(make_notifier: Any, receiver: Receiver) -> None:
    receiver.plan = [(200, 1.0)]  # slower than the client's timeout: the receiver saw it, we did not
    notifier = await make_notifier()
    await notifier.set_channel(NS, "hook", hook(receiver.url, retry={"attemptTimeout": "300ms"}))
    await notifier.handle(notification())
    await notifier.wait_idle(5)
    keys = [h.headers["Idempotency-Key"] for h in receiver.hits]
    assert len(keys) == 2 and len(set(keys)) == 1  # at-least-once on the wire, one key to dedupe on


async def test_connection_refused_then_receiver_comes_up(make_notifier: Any, tmp_path: Path) -> None:
    from aiohttp import web

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on the port yet
    notifier = await make_notifier()
    retry = {"initialBackoff": "100ms", "maxBackoff": "200ms"}
    await notifier.set_channel(NS, "hook", hook(f"http://127.0.0.1:{port}/x", retry=retry))
    await notifier.handle(notification())
    await asyncio.sleep(0.4)
    assert notifier.outbox.counts().get("pending") == 1  # refused, waiting to retry
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await notifier.wait_idle(5)
        assert len(rec.hits) == 1
    finally:
        await runner.cleanup()


async def test_retries_end_at_max_age_and_the_give_up_is_reported(
    make_notifier: Any, receiver: Receiver, caplog: Any
) -> None:
    """A receiver that never recovers: attempts go on (many more than the old budget of 8) until the
    notification is older than retry.maxAge; then status, Event, metric counter and log say so."""
    receiver.default = (500, 0)
    sink = MemoryStatusSink()
    notifier = await make_notifier(sink)
    retry = {"maxAge": "1s", "initialBackoff": "10ms", "maxBackoff": "50ms"}
    await notifier.set_channel(NS, "hook", hook(receiver.url, retry=retry))
    start = time.monotonic()
    await notifier.handle(notification())
    await notifier.wait_idle(5)
    assert time.monotonic() - start >= 1.0  # not before the horizon
    assert len(receiver.hits) > 8 and notifier.outbox.counts() == {"failed": 1}
    assert notifier.given_up == {(NS, "hook", "maxAge"): 1}
    await asyncio.sleep(0.15)
    st = sink.channels[(NS, "hook")]
    assert st.failed_count == 1 and st.last_delivery is not None and st.last_delivery.outcome == "Failed"
    assert "retry.maxAge 1s" in st.last_delivery.message and "HTTP 500" in st.last_delivery.message
    (gave_up,) = [e for e in sink.events if e[3] == "DeliveryFailed"]
    assert gave_up[5] and "gave up 1 notification" in gave_up[4]
    assert [e[3] for e in sink.events].count("DeliveryFailing") == 1  # once for the outage, not per retry
    assert "gave up firing for api-latency" in caplog.text and "(maxAge)" in caplog.text


def test_backoff_is_exponential_capped_and_jittered() -> None:
    r = RetryPolicy(base_s=1, factor=2, cap_s=10, jitter=0.5)
    for attempt, full in ((1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)):
        delays = [r.delay(attempt) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert len(set(delays)) > 1


async def test_4xx_is_not_retried(make_notifier: Any, receiver: Receiver) -> None:
    receiver.default = (400, 0)
    notifier = await make_notifier()
    await notifier.set_channel(NS, "hook", hook(receiver.url))
    await notifier.handle(notification())
    await notifier.wait_idle(5)
    assert len(receiver.hits) == 1 and notifier.outbox.counts() == {"failed": 1}


async def test_replayed_transition_is_not_sent_twice(make_notifier: Any, receiver: Receiver) -> None:
    notifier = await make_notifier()
    await notifier.set_channel(NS, "hook", hook(receiver.url))
    for _ in range(3):
        await notifier.handle(notification())
    await notifier.wait_idle(5)
    assert len(receiver.hits) == 1


async def test_restart_mid_queue_delivers_each_exactly_once(
    make_notifier: Any, receiver: Receiver, tmp_path: Path
) -> None:
    """Cancel the notifier's tasks while rows are queued and in flight; a new one on the same file
    finishes the queue. Counted by key and in total, so a loss or a duplicate fails."""
    count = 60
    receiver.default = (200, 0.02)
    path = tmp_path / "restart.sqlite"
    first = await make_notifier(path=path, concurrency=4)
    await first.set_channel(NS, "hook", hook(receiver.url))
    for i in range(count):
        await first.handle(notification(i))
    while len(receiver.hits) < 10:
        await asyncio.sleep(0.005)
    await first.stop(grace_s=5)  # cancels the loop; in-flight sends finish and are recorded
    delivered_before = len(receiver.hits)
    assert 10 <= delivered_before < count
    second = await make_notifier(path=path, concurrency=4)
    await second.set_channel(NS, "hook", hook(receiver.url))
    await second.wait_idle(10)
    keys = Counter(receiver.keys())
    assert len(keys) == count and len(receiver.hits) == count
    assert max(keys.values()) == 1


async def test_hard_crash_mid_queue_loses_nothing_and_repeats_only_in_flight(
    make_notifier: Any, receiver: Receiver, tmp_path: Path
) -> None:
    """SIGKILL a notifier process mid-queue (no chance to record anything). Nothing is lost;
    only the row that was on the wire (one per channel by default) can arrive twice, and then with
    the same Idempotency-Key."""
    count, concurrency = 80, 4
    receiver.default = (200, 0.02)
    path = tmp_path / "crash.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (ROOT / "operator", ROOT, ROOT / "tests")))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.notify.crash_child",
        str(path),
        receiver.url,
        str(count),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"enqueued"
    deadline = time.monotonic() + 20
    while len(receiver.hits) < 20 and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    before = len(receiver.hits)
    assert 20 <= before < count
    second = await make_notifier(path=path, concurrency=concurrency)
    await second.set_channel(NS, "hook", hook(receiver.url))
    await second.wait_idle(10)
    keys = Counter(h.headers["Idempotency-Key"] for h in receiver.hits)
    assert len(keys) == count  # nothing lost
    duplicates = len(receiver.hits) - count
    assert 0 <= duplicates <= 1  # at most what was in flight at the kill: rateLimit.maxInFlight, 1


async def test_rate_limit_per_channel_waits_never_drops(make_notifier: Any, receiver: Receiver) -> None:
    notifier = await make_notifier(rate_window_s=0.5)
    await notifier.set_channel(NS, "hook", hook(receiver.url, rateLimit={"perMinute": 3}))
    start = time.monotonic()
    for i in range(7):
        await notifier.handle(notification(i))
    await notifier.wait_idle(5)
    elapsed = time.monotonic() - start
    assert len(receiver.hits) == 7
    assert elapsed >= 1.0  # 3 + 3 + 1 across three windows of 0.5 s
    stamps = [h.at for h in receiver.hits]
    # ≤ 3 in any window: the 4th send waits 0.5 s for the window after the 1st; stamps are taken
    # when the receiver (same event loop) gets round to a request, so allow a loaded machine's lag.
    # Without the limit all 7 arrive within a few ms.
    assert all(b - a >= 0.3 for a, b in zip(stamps, stamps[3:], strict=False)), stamps


async def test_test_delivery_annotation(make_notifier: Any, receiver: Receiver, tmp_path: Path) -> None:
    sink = MemoryStatusSink()
    notifier = await make_notifier(sink)
    await notifier.set_channel(NS, "hook", hook(receiver.url), {TEST_ANNOTATION: "t-1"})
    await notifier.wait_idle(5)
    await notifier.set_channel(NS, "hook", hook(receiver.url), {TEST_ANNOTATION: "t-1"})  # same token: no-op
    await notifier.wait_idle(5)
    await asyncio.sleep(0.15)
    assert len(receiver.hits) == 1 and receiver.hits[0].json["kind"] == "test"
    st = sink.channels[(NS, "hook")]
    assert st.last_test_delivery is not None and st.last_test_delivery.outcome == "Delivered"
    assert "t-1" in st.last_test_delivery.message
    assert st.delivered_count == 0  # tests are not counted as notifications
    assert [c.type for c in st.conditions] == ["Ready"] and st.conditions[0].status == "True"


async def test_status_counts_survive_restart(make_notifier: Any, receiver: Receiver, tmp_path: Path) -> None:
    path = tmp_path / "counts.sqlite"
    first = await make_notifier(path=path)
    await first.set_channel(NS, "hook", hook(receiver.url))
    await first.handle(notification(1))
    await first.wait_idle(5)
    await first.stop()
    sink = MemoryStatusSink()
    second = await make_notifier(sink, path=path)
    await second.set_channel(NS, "hook", hook(receiver.url))
    await second.handle(notification(2))
    await second.wait_idle(5)
    await asyncio.sleep(0.15)
    assert sink.channels[(NS, "hook")].delivered_count == 2


async def test_ready_false_when_secret_missing(make_notifier: Any) -> None:
    notifier = await make_notifier()
    cond = await notifier.set_channel(
        NS, "slack", channel({"type": "slack", "slack": {"webhookUrl": {"name": "nope", "key": "url"}}})
    )
    assert cond.status == "False" and cond.reason == "SecretNotFound" and "slack.webhookUrl" in cond.message


async def test_outbox_rows_are_written_before_handle_returns(tmp_path: Path, secrets: Any) -> None:
    """No worker running: the row is on disk once handle returns (what a crash would leave)."""
    n = Notifier(tmp_path / "o.sqlite", secrets, MemoryStatusSink())
    await n.set_channel(NS, "hook", hook("http://127.0.0.1:9/"))
    await n.handle(notification())
    other = Outbox(tmp_path / "o.sqlite")
    assert other.counts() == {"pending": 1}
    other.close()
    await n.stop()


async def test_finished_outbox_rows_are_pruned_after_the_retention(tmp_path: Path, secrets: Any) -> None:
    """Delivered and failed rows older than the retention go; pending ones always stay."""
    box = Outbox(tmp_path / "o.sqlite")
    with box.transaction():
        for idem in ("old-delivered", "old-failed", "old-pending", "new-delivered"):
            note = {"rule_namespace": NS, "rule_name": "r", "dedup_key": idem, "kind": "firing"}
            box.enqueue(idem, NS, "hook", "firing", note, False, 1.0)
    ids = {r.idem: r.id for r in box.due(10.0, 10, set())}
    box.finish(ids["old-delivered"], "delivered", 1, "ok", time.time() - 3600)
    box.finish(ids["old-failed"], "failed", 5, "gave up", time.time() - 3600)
    box.finish(ids["new-delivered"], "delivered", 1, "ok", time.time())
    box.finish(ids["old-pending"], "pending", 1, "retry", time.time() - 3600, time.time() + 3600)
    box.close()
    n = Notifier(tmp_path / "o.sqlite", secrets, MemoryStatusSink(), retention_s=600, prune_interval_s=0.01)
    await n.start()
    try:
        deadline = time.monotonic() + 5
        while n.outbox.counts() != {"delivered": 1, "pending": 1} and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert n.outbox.counts() == {"delivered": 1, "pending": 1}
    finally:
        await n.stop()
