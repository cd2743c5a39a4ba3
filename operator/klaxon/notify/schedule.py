"""Schedule gating (SEMANTICS §5): ``[start, end)`` in local wall-clock time of an IANA zone.

``days`` names the day a window *starts*, so Fri 22:00-06:00 contains Saturday 03:00.
An aware instant always maps to one existing local time; both instants of a repeated hour
therefore match. A naive datetime is read as local wall time: a nonexistent one (spring
forward gap) never matches, an ambiguous one matches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ..api.common import WEEKDAYS, Schedule, ScheduleWindow


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def local_time(ts: datetime, timezone: str) -> datetime | None:
    """``ts`` in the zone's wall time, or None when a naive ``ts`` does not exist there."""
    tz = ZoneInfo(timezone)
    if ts.tzinfo is None:
        aware = ts.replace(tzinfo=tz)
        back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        return aware if back == ts else None
    return ts.astimezone(tz)


def window_contains(local: datetime, window: ScheduleWindow) -> bool:
    """Whether a local wall time lies inside one window (start day rule, midnight crossing)."""
    start, end = _minutes(window.start), _minutes(window.end)
    if start == end:
        return False  # rejected by validation; never matches if it slips through
    m = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    day = WEEKDAYS[local.weekday()]
    prev = WEEKDAYS[(local.weekday() - 1) % 7]
    if start < end:
        return day in window.days and start <= m < end
    return (day in window.days and m >= start) or (prev in window.days and m < end)


def in_schedule(ts: datetime, schedule: Schedule | None) -> bool:
    """Whether ``ts`` is inside any window of ``schedule``; no schedule means always."""
    if schedule is None:
        return True
    local = local_time(ts, schedule.timezone)
    if local is None:
        return False
    return any(window_contains(local, w) for w in schedule.windows)
