"""Schedules in an IANA time zone (SEMANTICS §5).

An instant is converted to local wall-clock time and tested against `[start, end)`; a window
that crosses midnight belongs to the day it starts. Working from instants makes the DST
rules fall out: a skipped local time is never the local time of any instant (never
matches), a repeated local time is the local time of two instants (both match).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt

from klaxon.engine._tz import DAY_S, local_seconds, zone
from klaxon.engine.types import Schedule, ScheduleWindow

BoolArray = npt.NDArray[np.bool_]


def _window_matches(w: ScheduleWindow, weekday: int, sod: float) -> bool:
    start, end = w.start_min * 60, w.end_min * 60
    if start < end:
        return weekday in w.days and start <= sod < end
    return (weekday in w.days and sod >= start) or ((weekday - 1) % 7 in w.days and sod < end)


def in_schedule(ts_unix: float, schedule: Schedule) -> bool:
    """Whether the instant falls in any window of the schedule."""
    local = datetime.fromtimestamp(ts_unix, zone(schedule.timezone))
    sod = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return any(_window_matches(w, local.weekday(), sod) for w in schedule.windows)


def in_schedule_array(ts_unix: npt.NDArray[np.float64], schedule: Schedule) -> BoolArray:
    """Vectorised `in_schedule`."""
    ts = np.asarray(ts_unix, dtype=np.float64)
    local = local_seconds(schedule.timezone, ts)
    day = np.floor(local / DAY_S)
    sod = local - day * DAY_S
    weekday = ((day.astype(np.int64) + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
    prev_weekday = (weekday - 1) % 7
    out = np.zeros(ts.shape, dtype=bool)
    for w in schedule.windows:
        days = np.array(sorted(w.days))
        on_day = np.isin(weekday, days)
        start, end = w.start_min * 60, w.end_min * 60
        if start < end:
            out |= on_day & (sod >= start) & (sod < end)
        else:
            out |= (on_day & (sod >= start)) | (np.isin(prev_weekday, days) & (sod < end))
    return out
