"""Messages about one alert instance on one channel leave the outbox in the order they were queued."""

from __future__ import annotations

from pathlib import Path

from klaxon.notify.outbox import Outbox


def note(key: str, kind: str) -> dict[str, str]:
    return {"rule_namespace": "ns", "rule_name": "r", "dedup_key": key, "kind": kind}


def test_one_row_per_alert_key_and_never_past_one_in_flight(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    with box.transaction():
        box.enqueue("a-fire", "ns", "hook", "firing", note("a", "firing"), False, 1.0)
        box.enqueue("a-resolve", "ns", "hook", "resolved", note("a", "resolved"), False, 2.0)
        box.enqueue("b-fire", "ns", "hook", "firing", note("b", "firing"), False, 3.0)
        box.enqueue("a-fire-other-channel", "ns", "mail", "firing", note("a", "firing"), False, 4.0)
    first = box.due(10.0, 10, set())
    assert [r.idem for r in first] == ["a-fire", "b-fire", "a-fire-other-channel"]
    # While a's trigger is in flight (or waiting for a retry), its resolve is held back.
    in_flight = {first[0].id}
    assert [r.idem for r in box.due(10.0, 10, in_flight, {first[0].okey})] == ["b-fire", "a-fire-other-channel"]
    box.finish(first[0].id, "delivered", 1, "ok", 11.0)
    assert [r.idem for r in box.due(12.0, 10, set())] == ["a-resolve", "b-fire", "a-fire-other-channel"]
