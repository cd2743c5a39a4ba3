"""The outbox's disk fills up under the evaluator (RLIMIT_FSIZE in the child: writes past the
limit fail with EFBIG, as on a full disk), or its state dir cannot be written at all: a clear
error, the process stays up and keeps notifying, and nothing is marked delivered that was not."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request

from faults.conftest import NS, Stack, assert_episode_invariant, ledger, rule_body, until

SERIES = [f"s{i:02d}" for i in range(20)]


def healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        return int(resp.status)


def on_disk_delivered(path: str) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT idem FROM outbox WHERE status = 'delivered'")}
    finally:
        db.close()


async def test_a_full_disk_under_the_outbox(stack: Stack) -> None:
    for s in SERIES:
        stack.exporter.values[s] = 10.0
    stack.setup([rule_body("burst")])
    # room for the outbox and a few commits, not for a burst of 20 notifications and their outcomes
    proc = stack.evaluator(fsize=160 * 1024)
    await proc.start()
    rec = stack.receiver
    for s in SERIES:
        stack.exporter.values[s] = 95.0
    await until(lambda: "cannot be written" in proc.log(), 30, lambda: proc.log()[-2000:])
    await until(lambda: len(ledger(rec).firing) == len(SERIES), 30, lambda: f"{ledger(rec).firing}")
    for s in SERIES:
        stack.exporter.values[s] = 10.0
    await until(lambda: len(ledger(rec).resolved) == len(SERIES), 30, lambda: f"{ledger(rec).resolved}")

    # Said clearly, once; still up and healthy; the metric shows it.
    errors = [line for line in proc.log().splitlines() if "cannot be written" in line]
    assert len(errors) == 1 and "ERROR" in errors[0] and "outbox.sqlite" in errors[0], errors
    assert "File too large" in errors[0] or "disk" in errors[0] or "full" in errors[0], errors[0]
    assert "Traceback" not in proc.log()
    assert proc.alive and healthz(proc.metrics_port) == 200
    assert proc.metric("klaxon_notification_outbox_on_disk") == 0

    # The file never says delivered for what the receiver did not get.
    accepted = {h.headers["Idempotency-Key"] for h in rec.accepted}
    path = str(stack.tmp / "state" / "outbox.sqlite")
    assert on_disk_delivered(path) <= accepted
    proc.kill()
    await proc.wait()
    assert on_disk_delivered(path) <= accepted

    # After a restart with room again: what the file still holds as pending goes again, under the
    # same keys; nothing is notified under a second key, no resolution is lost.
    proc.fsize = None
    await proc.start()
    await until(lambda: proc.metric("klaxon_notifications_pending", namespace=NS, channel="hook") == 0, 30,
                "the outbox to drain")
    await asyncio.sleep(1.0)
    led = assert_episode_invariant(rec)
    assert len(led.firing) == len(SERIES) and len(led.resolved) == len(SERIES)
    assert proc.metric("klaxon_notification_outbox_on_disk") == 1
    print(f"\nfull disk: {len(led.firing)} firing + {len(led.resolved)} resolved delivered, "
          f"{led.repeats} repeats by key after the restart")


async def test_a_state_dir_that_cannot_be_written(stack: Stack) -> None:
    blocker = stack.tmp / "not-a-dir"
    blocker.write_text("a file where the state dir's parent should be\n")
    for s in SERIES[:5]:
        stack.exporter.values[s] = 10.0
    stack.setup([rule_body("burst")])
    proc = stack.evaluator(state_dir=blocker / "state")
    await proc.start()
    rec = stack.receiver
    for s in SERIES[:5]:
        stack.exporter.values[s] = 95.0
    await until(lambda: len(ledger(rec).firing) == 5, 30, lambda: f"{ledger(rec).firing}")
    errors = [line for line in proc.log().splitlines() if "cannot be written" in line]
    assert len(errors) == 1 and "ERROR" in errors[0] and "not-a-dir/state/outbox.sqlite" in errors[0], errors
    assert "Traceback" not in proc.log()
    await asyncio.sleep(2.0)  # several cycles: no crash, no restart
    assert proc.alive and proc.starts == 1 and healthz(proc.metrics_port) == 200
    assert proc.metric("klaxon_notification_outbox_on_disk") == 0
    for s in SERIES[:5]:
        stack.exporter.values[s] = 10.0
    await until(lambda: len(ledger(rec).resolved) == 5, 30, lambda: f"{ledger(rec).resolved}")
    assert_episode_invariant(rec)
