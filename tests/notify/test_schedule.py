"""SEMANTICS §5: start day, midnight crossing, DST gaps and repeated hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from klaxon.api.common import Schedule
from klaxon.notify import in_schedule


def sched(days: list[str], start: str, end: str, tz: str = "Europe/Berlin") -> Schedule:
    return Schedule.model_validate({"timezone": tz, "windows": [{"days": days, "start": start, "end": end}]})


FRI_NIGHT = sched(["Fri"], "22:00", "06:00")


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2025-01-17T22:00", True),  # Fri 22:00, start inclusive
        ("2025-01-17T21:59", False),
        ("2025-01-18T03:00", True),  # Sat 03:00 belongs to Friday's window
        ("2025-01-18T06:00", False),  # end exclusive
        ("2025-01-18T22:30", False),  # Saturday night: Sat is not in days
        ("2025-01-17T03:00", False),  # Fri 03:00 would be Thursday's window
    ],
)
def test_crossing_midnight_uses_the_start_day(local: str, expected: bool) -> None:
    naive = datetime.fromisoformat(local)
    assert in_schedule(naive, FRI_NIGHT) is expected
    aware = naive.replace(tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Berlin")).astimezone(UTC)
    assert in_schedule(aware, FRI_NIGHT) is expected


def test_whole_day_and_plain_window() -> None:
    assert in_schedule(datetime(2025, 1, 18, 23, 59), sched(["Sat"], "00:00", "24:00"))
    assert not in_schedule(datetime(2025, 1, 19, 0, 0), sched(["Sat"], "00:00", "24:00"))
    assert in_schedule(datetime(2025, 1, 15, 9, 0), sched(["Wed"], "09:00", "17:00"))


def test_nonexistent_local_time_never_matches() -> None:
    # 2025-03-30 02:30 does not exist in Berlin (clocks jump 02:00 → 03:00)
    s = sched(["Sun"], "02:00", "03:00")
    assert not in_schedule(datetime(2025, 3, 30, 2, 30), s)
    # every real instant of that night is outside 02:00-03:00 wall time
    t = datetime(2025, 3, 30, 0, 0, tzinfo=UTC)
    assert not any(in_schedule(t + timedelta(minutes=m), s) for m in range(0, 180, 5))


def test_repeated_hour_matches_both_instants() -> None:
    # 2025-10-26 02:30 happens twice in Berlin: 00:30Z (CEST) and 01:30Z (CET)
    s = sched(["Sun"], "02:00", "03:00")
    assert in_schedule(datetime(2025, 10, 26, 0, 30, tzinfo=UTC), s)
    assert in_schedule(datetime(2025, 10, 26, 1, 30, tzinfo=UTC), s)
    assert not in_schedule(datetime(2025, 10, 26, 2, 30, tzinfo=UTC), s)  # 03:30 CET


def test_no_schedule_means_always() -> None:
    assert in_schedule(datetime.now(UTC), None)
