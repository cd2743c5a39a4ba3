"""SEMANTICS §5 through the engine's ``in_schedule`` (notify's copy was removed): start day,
midnight crossing, DST gaps and repeated hours; and notify's wrapper agrees with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from klaxon.api.common import Schedule
from klaxon.compile.engine_rule import schedule_from_spec
from klaxon.engine.schedule import in_schedule as engine_in_schedule
from klaxon.notify import in_schedule

BERLIN = ZoneInfo("Europe/Berlin")


def sched(days: list[str], start: str, end: str, tz: str = "Europe/Berlin") -> Schedule:
    return Schedule.model_validate({"timezone": tz, "windows": [{"days": days, "start": start, "end": end}]})


def engine(ts: datetime, s: Schedule) -> bool:
    result = engine_in_schedule(ts.timestamp(), schedule_from_spec(s))
    assert in_schedule(ts, s) is result  # notify's entry point is the engine's function
    return result


def berlin(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=BERLIN)


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
    assert engine(berlin(local), FRI_NIGHT) is expected
    assert engine(berlin(local).astimezone(UTC), FRI_NIGHT) is expected


def test_whole_day_and_plain_window() -> None:
    assert engine(berlin("2025-01-18T23:59"), sched(["Sat"], "00:00", "24:00"))
    assert not engine(berlin("2025-01-19T00:00"), sched(["Sat"], "00:00", "24:00"))
    assert engine(berlin("2025-01-15T09:00"), sched(["Wed"], "09:00", "17:00"))


def test_nonexistent_local_time_never_matches() -> None:
    # 2025-03-30 02:00-03:00 does not exist in Berlin (clocks jump 02:00 → 03:00): no instant is in it
    s = sched(["Sun"], "02:00", "03:00")
    t = datetime(2025, 3, 30, 0, 0, tzinfo=UTC)
    assert not any(engine(t + timedelta(minutes=m), s) for m in range(0, 180, 5))


def test_repeated_hour_matches_both_instants() -> None:
    # 2025-10-26 02:30 happens twice in Berlin: 00:30Z (CEST) and 01:30Z (CET)
    s = sched(["Sun"], "02:00", "03:00")
    assert engine(datetime(2025, 10, 26, 0, 30, tzinfo=UTC), s)
    assert engine(datetime(2025, 10, 26, 1, 30, tzinfo=UTC), s)
    assert not engine(datetime(2025, 10, 26, 2, 30, tzinfo=UTC), s)  # 03:30 CET


def test_naive_time_is_utc_and_no_schedule_means_always() -> None:
    assert in_schedule(datetime(2025, 1, 17, 21, 30), FRI_NIGHT)  # 21:30Z = 22:30 CET
    assert in_schedule(datetime.now(UTC), None)
