"""The outbox when its file cannot be written: it carries on in memory from what the file held,
says why, and writes itself back once the file can be written again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from klaxon.notify import MemoryStatusSink, Notifier
from klaxon.notify.outbox import Outbox

from .conftest import NS, Receiver, channel, notification


def rows(box: Outbox) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in box.db.execute("SELECT idem, status FROM outbox ORDER BY id")]


def test_an_unwritable_path_falls_back_to_memory_and_is_written_back_later(
    tmp_path: Path, caplog: Any
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    box = Outbox(blocker / "outbox.sqlite")
    assert box.problem is not None and "cannot be written" in box.problem
    assert f"cannot create directory {blocker}: File exists" in box.problem
    assert "working from memory" in caplog.text
    box.write(lambda: box.enqueue("k1", NS, "hook", "firing", {"rule_name": "r"}, False, 1.0))
    assert box.restore() is False  # still no place for it
    blocker.unlink()  # the volume is back
    assert box.restore() is True and box.problem is None
    box.write(lambda: box.enqueue("k2", NS, "hook", "firing", {"rule_name": "r"}, False, 2.0))
    box.close()
    again = Outbox(blocker / "outbox.sqlite")
    assert again.problem is None and rows(again) == [("k1", "pending"), ("k2", "pending")]
    again.close()


def test_a_file_that_becomes_unwritable_is_copied_to_memory_first(tmp_path: Path, caplog: Any) -> None:
    """What the file held (pending rows, alert memory) goes on in memory; the failed write is redone."""
    state = tmp_path / "state"
    box = Outbox(state / "outbox.sqlite")
    box.write(lambda: box.enqueue("held", NS, "hook", "firing", {"rule_name": "r"}, False, 1.0))
    box.write(lambda: box.put_key("alert", NS, "r", True, {"episode_id": "e1"}))
    box.db.execute("PRAGMA query_only = ON")  # from here on every write fails as on a read-only volume
    with caplog.at_level(logging.ERROR):
        added = box.write(lambda: box.enqueue("new", NS, "hook", "firing", {"rule_name": "r"}, False, 2.0))
    assert added is not None and box.problem is not None
    assert rows(box) == [("held", "pending"), ("new", "pending")] and box.get_key("alert") == {"episode_id": "e1"}
    assert "cannot be written" in caplog.text
    box.close()


def test_a_bug_is_not_taken_for_a_full_disk(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite")
    try:
        box.write(lambda: box.db.execute("INSERT INTO nowhere VALUES (1)"))
    except Exception as exc:
        assert "no such table" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a broken statement must raise")
    assert box.problem is None
    box.close()


async def test_the_notifier_delivers_from_memory_and_marks_nothing_on_disk(
    make_notifier: Any, receiver: Receiver, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    sink = MemoryStatusSink()
    notifier: Notifier = await make_notifier(sink, path=blocker / "outbox.sqlite")
    assert notifier.storage_problem is not None
    await notifier.set_channel(NS, "hook", channel({"type": "webhook", "webhook": {"url": receiver.url}}))
    await notifier.handle(notification(1))
    await notifier.wait_idle(5)
    assert len(receiver.accepted) == 1 and notifier.outbox.counts() == {"delivered": 1}
    assert blocker.is_file()  # nothing was written where the outbox should be
