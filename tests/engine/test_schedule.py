"""SEMANTICS §5: schedules in a time zone."""

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from klaxon.engine import Schedule, ScheduleWindow, in_schedule, in_schedule_array

BERLIN = ZoneInfo("Europe/Berlin")
FRI, SAT, SUN = 4, 5, 6


def ts(*args, fold=0):
    return datetime(*args, tzinfo=BERLIN, fold=fold).timestamp()


def berlin(*windows):
    return Schedule("Europe/Berlin", tuple(windows))


NIGHT = berlin(ScheduleWindow(frozenset({FRI}), 22 * 60, 6 * 60))


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        ((2026, 6, 5, 21, 59), False),  # Friday before start
        ((2026, 6, 5, 22, 0), True),  # start is inclusive
        ((2026, 6, 6, 3, 0), True),  # Saturday 03:00: the window started on Friday
        ((2026, 6, 6, 5, 59, 59), True),
        ((2026, 6, 6, 6, 0), False),  # end is exclusive
        ((2026, 6, 6, 22, 30), False),  # Saturday night: days names the starting day only
        ((2026, 6, 5, 3, 0), False),  # Friday early morning belongs to Thursday's window
    ],
)
def test_friday_night_window(when, inside):
    assert in_schedule(ts(*when), NIGHT) is inside
    assert bool(in_schedule_array(np.array([ts(*when)]), NIGHT)[0]) is inside


def test_window_on_saturday_after_midnight_uses_local_time():
    # 2026-06-06 01:00 UTC is Saturday 03:00 in Berlin (CEST)
    assert in_schedule(datetime(2026, 6, 6, 1, 0, tzinfo=ZoneInfo("UTC")).timestamp(), NIGHT)


def test_spring_forward_gap_never_matches():
    # 2026-03-29 02:00-03:00 does not exist in Berlin; scan every minute of that day
    gap = berlin(ScheduleWindow(frozenset({SUN}), 2 * 60, 3 * 60))
    start = ts(2026, 3, 29, 0, 0)
    minutes = start + 60.0 * np.arange(24 * 60)
    assert not in_schedule_array(minutes, gap).any()
    assert not any(in_schedule(float(m), gap) for m in minutes)
    # the same window a week later matches for a full hour
    later = minutes + 7 * 86400
    assert int(in_schedule_array(later, gap).sum()) == 60


def test_fall_back_repeated_hour_matches_both():
    # 2026-10-25 02:00-03:00 happens twice in Berlin
    window = berlin(ScheduleWindow(frozenset({SUN}), 2 * 60, 3 * 60))
    first, second = ts(2026, 10, 25, 2, 30, fold=0), ts(2026, 10, 25, 2, 30, fold=1)
    assert second - first == 3600
    assert in_schedule(first, window) and in_schedule(second, window)
    minutes = ts(2026, 10, 25, 0, 0) + 60.0 * np.arange(25 * 60)
    assert int(in_schedule_array(minutes, window).sum()) == 120


def test_whole_day_and_multiple_windows():
    sched = berlin(
        ScheduleWindow(frozenset({0}), 0, 24 * 60),
        ScheduleWindow(frozenset({2}), 9 * 60, 17 * 60),
    )
    assert in_schedule(ts(2026, 6, 1, 23, 59), sched)  # Monday, whole day
    assert in_schedule(ts(2026, 6, 3, 9, 0), sched)  # Wednesday office hours
    assert not in_schedule(ts(2026, 6, 2, 12, 0), sched)  # Tuesday


def test_start_equal_end_is_rejected():
    with pytest.raises(ValueError, match="start equals end"):
        ScheduleWindow(frozenset({FRI}), 600, 600)
    with pytest.raises(ValueError):
        ScheduleWindow(frozenset({7}), 0, 60)
    with pytest.raises(ValueError):
        ScheduleWindow(frozenset({1}), 0, 1441)


def test_vectorised_equals_scalar():
    rng = np.random.default_rng(3)
    times = rng.uniform(ts(2026, 1, 1, 0, 0), ts(2027, 1, 1, 0, 0), 4000)
    sched = Schedule(
        "America/New_York",
        (
            ScheduleWindow(frozenset({FRI, SAT}), 22 * 60 + 30, 1 * 60 + 15),
            ScheduleWindow(frozenset({1, 3}), 8 * 60, 18 * 60),
        ),
    )
    got = in_schedule_array(times, sched)
    assert got.tolist() == [in_schedule(float(t), sched) for t in times]
    assert 0 < got.sum() < times.size
