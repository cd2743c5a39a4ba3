"""A receiver down for longer than the old retry budget — answering 500, then timing out, then
refusing connections — and back: every alert is delivered once it is back (counted by
Idempotency-Key), and while it is down the channel says so (status, Ready, metric, one Event)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faults.conftest import AR, NC, NS, RETRY, Stack, assert_episode_invariant, ledger, old_budget_s, rule_body, until
from kube_harness.runner import RunnerFactory
from support.operator_helpers import start_operator

ALERTS = [f"s{i}" for i in range(10)]
PHASE_S = 2.0  # each of 500 / timeout / refused


def ready(stack: Stack) -> dict[str, Any]:
    conds = stack.channel_status().get("conditions") or []
    return next((c for c in conds if c.get("type") == "Ready"), {})


async def test_a_receiver_down_longer_than_the_old_budget_loses_nothing(
    stack: Stack, kopf_runner: RunnerFactory
) -> None:
    for s in ALERTS:
        stack.exporter.values[s] = 10.0
    stack.setup([rule_body("burst")])
    runner = await start_operator(stack.kube, kopf_runner)
    await until(lambda: ready(stack).get("status") == "True", 20, lambda: f"channel: {stack.channel_status()}")
    proc = stack.evaluator()
    await proc.start()
    rec = stack.receiver

    # The outage: 500s, then answers slower than attemptTimeout, then nothing listening.
    rec.default = (500, 0.0)
    outage_start = time.monotonic()
    for s in ALERTS:
        stack.exporter.values[s] = 95.0
    await until(lambda: len({h.headers.get("Idempotency-Key") for h in rec.hits}) >= len(ALERTS), 20,
                lambda: f"{len(rec.hits)} attempts so far")
    await asyncio.sleep(max(0.0, PHASE_S - (time.monotonic() - outage_start)))
    rec.default = (503, 1.0)  # hangs past attemptTimeout (500ms); the client stops waiting first
    await asyncio.sleep(PHASE_S)
    await stack.hook.stop()
    await asyncio.sleep(PHASE_S)

    # Down: every alert waits, and every place a user looks says so.
    outage_s = time.monotonic() - outage_start
    assert outage_s > 3 * old_budget_s()
    queue = await until(
        lambda: (q := stack.channel_status().get("queue") or {}).get("failingSince") and q.get("pending") == 10 and q,
        10,
        lambda: f"status: {stack.channel_status()}",
    )
    assert "cannot connect" in queue["lastError"] and queue["oldestPendingTime"]
    cond = await until(lambda: (c := ready(stack)).get("reason") == "DeliveryFailing" and c, 10,
                       lambda: f"Ready: {ready(stack)}")
    assert cond["status"] == "False" and "10 notification(s) waiting" in cond["message"]
    assert "/hooks/klaxon" not in str(stack.channel_status())  # the URL is the channel's, not status'
    assert proc.metric("klaxon_notifications_pending", namespace=NS, channel="hook") == 10
    assert proc.metric("klaxon_notification_channel_failing", namespace=NS, channel="hook") == 1
    assert (proc.metric("klaxon_notifications_oldest_pending_age_seconds", namespace=NS, channel="hook") or 0) > 4
    assert proc.metric("klaxon_notifications_given_up_total", namespace=NS, channel="hook", reason="maxAge") is None
    attempts_while_down = proc.metric("klaxon_notification_attempts_failed_total", namespace=NS, channel="hook")
    assert attempts_while_down is not None and attempts_while_down > 8 * len(ALERTS) / 2
    failing_events = stack.events("DeliveryFailing")
    assert len(failing_events) == 1 and failing_events[0]["type"] == "Warning"  # once, not per retry

    # Back: everything arrives, each alert under one key, within a few backoff caps.
    assert rec.accepted == []
    rec.default = (200, 0.0)
    back = time.monotonic()
    await stack.hook.start()
    led = await until(
        lambda: len((lg := ledger(rec)).firing) == len(ALERTS) and lg, 20, lambda: f"{ledger(rec).firing}"
    )
    caught_up_s = time.monotonic() - back
    assert {d for d, _ in led.firing} == {f"burst,series={s}" for s in ALERTS}
    assert all(len(keys) == 1 for keys in led.firing.values())
    queue = await until(
        lambda: (q := stack.channel_status().get("queue") or {}).get("pending") == 0 and not q.get("failingSince")
        and q,
        10,
        lambda: f"status: {stack.channel_status()}",
    )
    await until(lambda: ready(stack).get("status") == "True", 10, lambda: f"Ready: {ready(stack)}")
    assert len(stack.events("DeliveryRecovered")) == 1 and len(stack.events("DeliveryFailing")) == 1
    assert stack.events("DeliveryFailed") == []  # nothing was given up
    assert proc.metric("klaxon_notifications_pending", namespace=NS, channel="hook") == 0
    assert proc.metric("klaxon_notification_channel_failing", namespace=NS, channel="hook") == 0

    # ... and the resolutions follow.
    for s in ALERTS:
        stack.exporter.values[s] = 10.0
    await until(lambda: len(ledger(rec).resolved) == len(ALERTS), 20, lambda: f"{ledger(rec).resolved}")
    led = assert_episode_invariant(rec)
    rule = stack.kube.get_object(AR, "burst", NS)
    assert rule is not None and rule["status"]["state"] == "Inactive"
    print(
        f"\nreceiver down {outage_s:.1f}s (old budget {old_budget_s():.2f}s with retry {RETRY}): "
        f"delivered {len(led.firing)}/{len(ALERTS)} firing after recovery, all within {caught_up_s:.1f}s "
        f"({led.repeats} repeats by key), "
        f"{len(led.resolved)}/{len(ALERTS)} resolved; {len(rec.hits)} requests in all"
    )
    await runner.stop()
    assert stack.kube.get_object(NC, "hook", NS) is not None
