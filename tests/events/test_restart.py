"""Event rules across an evaluator restart: grouping, cooldown and entries come back from the
state dir, so an open alert is not opened (and notified) again and its entry keeps counting."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.events.entries import ENTRIES_ANNOTATION, Record, set_record
from klaxon.events.model import EventIn
from klaxon.notify.model import Notification
from support.events import event, make_service

T0 = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
CONFIG = AlertConfigSpec.model_validate({"grouping": {"window": "2m", "minEvents": 2, "groupBy": ["camera_id"]}})
RULE = AlertRuleSpec.model_validate(
    {"events": {"objectTypes": ["person"]}, "notify": {"dedupKey": "{camera_id}", "cooldown": "10m"}}
)


class Sent:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def handle(self, n: Notification) -> None:
        self.keys.append(n.dedup_key)


def evs(*specs: tuple[str, int]) -> list[EventIn]:
    return [
        EventIn.model_validate_json(json.dumps(event(f"{cam}-{s}", T0 + timedelta(seconds=s), camera_id=cam)))
        for cam, s in specs
    ]


def service(path: Path | None, sent: Sent, rule: AlertRuleSpec = RULE, annotations: Any = None) -> Any:
    svc, _ = make_service(CONFIG, notifier=sent, state_path=path, status_interval_s=0)
    svc.set_rule("site", "doors", rule, annotations)
    return svc


async def test_an_open_alert_stays_open_and_quiet_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "events-state.json"
    sent = Sent()
    first = service(path, sent)
    await first.process(evs(("A", 0), ("A", 10)))  # opens at minEvents 2: one notification
    assert sent.keys == ["A"]
    await first.stop()  # saves
    assert path.exists()

    second = service(path, sent)
    entry = second.rules[("site", "doors")].entries.open["A"]
    assert entry.count == 2
    await second.process(evs(("A", 20), ("A", 30)))  # absorbed by the open alert, inside the cooldown
    assert sent.keys == ["A"]
    assert second.rules[("site", "doors")].entries.open["A"].count == 4
    status = second.entries_status("site", "doors")
    assert status["entriesCount"] == 1 and status["entries"][0]["eventCount"] == 4

    # the control: the same events after a restart without the state file notify again
    again = Sent()
    fresh = service(None, again)
    await fresh.process(evs(("A", 20), ("A", 30)))
    assert again.keys == ["A"]


async def test_acknowledgements_survive_and_a_changed_rule_keeps_only_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "events-state.json"
    sent = Sent()
    first = service(path, sent)
    await first.process(evs(("A", 0), ("A", 10)))
    ack = set_record(None, Record("A", "ack", "alice", T0 + timedelta(minutes=1)))
    first.set_rule("site", "doors", RULE, {ENTRIES_ANNOTATION: ack})
    await first.save_state_async()  # the periodic save: one rule per loop step, the file in a thread

    second = service(path, sent, annotations={ENTRIES_ANNOTATION: ack})
    entry = second.rules[("site", "doors")].entries.open["A"]
    assert (entry.state, entry.acknowledged_by) == ("Acknowledged", "alice")
    assert entry.episode in second.rules[("site", "doors")].pipeline.acked

    changed = RULE.model_copy(update={"severity": "critical"})
    third = service(path, sent, rule=changed)
    rule = third.rules[("site", "doors")]
    assert list(rule.entries.open) == ["A"]  # entries kept
    assert rule.pipeline._grouper.groups == {} and rule.pipeline._cooldown == {}  # grouping starts afresh


async def test_an_unreadable_state_file_is_reported_and_ignored(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "events-state.json"
    path.write_text("{not json")
    caplog.set_level(logging.WARNING)
    sent = Sent()
    svc = service(path, sent)
    await svc.process(evs(("A", 0), ("A", 10)))
    assert sent.keys == ["A"]
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    svc.save_state()  # and it is replaced by a good one
    assert service(path, Sent()).rules[("site", "doors")].entries.open["A"].count == 2


async def test_stopping_before_the_rules_were_listed_keeps_the_saved_state(tmp_path: Path) -> None:
    """A restart that stops again before its first listing (slow API, SIGTERM) must not wipe the file."""
    from klaxon.events.service import sync_rules

    path = tmp_path / "events-state.json"
    sent = Sent()
    first = service(path, sent)
    await first.process(evs(("A", 0), ("A", 10)))
    await first.stop()

    quick, _ = make_service(CONFIG, notifier=sent, state_path=path, status_interval_s=0)
    await quick.stop()  # no rule was listed
    assert service(path, sent).rules[("site", "doors")].entries.open["A"].count == 2

    # a listing that failed for a namespace is not complete: nothing is dropped either
    partial, _ = make_service(CONFIG, notifier=sent, state_path=path, status_interval_s=0)
    sync_rules(partial, [], complete=False)
    await partial.stop()
    assert service(path, sent).rules[("site", "doors")].entries.open["A"].count == 2

    # once the rules were listed completely, a rule that is gone leaves the file
    done, _ = make_service(CONFIG, notifier=sent, state_path=path, status_interval_s=0)
    sync_rules(done, [])
    await done.stop()
    assert service(path, sent).rules[("site", "doors")].entries.open == {}
