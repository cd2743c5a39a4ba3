"""Vectorised UTC offsets of an IANA zone, and local wall clock → UTC with zoneinfo's fold=0 rule.

zoneinfo converts one datetime at a time; replays convert ~10⁵ times, so the zone's
transitions in the range are found once and looked up with `np.searchsorted`.
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
DAY_S = 86400


@lru_cache(maxsize=64)
def zone(key: str) -> ZoneInfo:
    return ZoneInfo(key)


def _offset_at(z: ZoneInfo, t: int) -> int:
    off = datetime.fromtimestamp(t, z).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


class ZoneTable:
    """Offsets of `key` over [lo, hi] (unix seconds), transitions resolved to the second.

    Assumes at most one transition per day, true of every real zone's DST rules.
    """

    def __init__(self, key: str, lo: float, hi: float) -> None:
        z = zone(key)
        day0 = math.floor(lo / DAY_S) - 1
        day1 = math.ceil(hi / DAY_S) + 1
        days = [d * DAY_S for d in range(day0, day1 + 1)]
        offs = [_offset_at(z, d) for d in days]
        starts: list[float] = [-math.inf]
        values: list[int] = [offs[0]]
        for i in range(len(days) - 1):
            if offs[i] == offs[i + 1]:
                continue
            a, b = days[i], days[i + 1]  # offset(a) is old, offset(b) is new
            while b - a > 1:
                mid = (a + b) // 2
                if _offset_at(z, mid) == offs[i]:
                    a = mid
                else:
                    b = mid
            starts.append(float(b))
            values.append(offs[i + 1])
        self.starts = np.array(starts)
        self.offsets = np.array(values, dtype=np.float64)
        self._distinct = np.unique(self.offsets)

    def offset(self, t: FloatArray) -> FloatArray:
        """UTC offset in seconds at each instant."""
        idx = np.searchsorted(self.starts, t, side="right") - 1
        return self.offsets[np.maximum(idx, 0)]

    def to_utc(self, local: FloatArray) -> FloatArray:
        """Instant of each local wall-clock time (as seconds since the local epoch).

        Matches zoneinfo with fold=0: a repeated time maps to its first occurrence, a
        nonexistent (skipped) time is read with the offset before the transition.
        """
        best = np.full(local.shape, np.inf)
        for o in self._distinct:
            u = local - o
            ok = self.offset(u) == o
            best = np.where(ok & (u < best), u, best)
        gap = ~np.isfinite(best)
        if gap.any():
            before = self.offset(local[gap] - self._distinct.max())
            best[gap] = local[gap] - before
        return best


def local_seconds(key: str, t: FloatArray) -> FloatArray:
    """Local wall-clock time of each instant, as seconds since 1970-01-01T00:00 local."""
    if t.size == 0:
        return t.astype(np.float64)
    table = ZoneTable(key, float(np.min(t)), float(np.max(t)))
    return t + table.offset(t)


def shift_local_weeks(key: str | None, t: FloatArray, weeks: int) -> FloatArray:
    """The instant with the same local wall-clock time `weeks` weeks earlier (DST-aware)."""
    shift = weeks * 7 * DAY_S
    if key is None or t.size == 0:
        return t - shift
    table = ZoneTable(key, float(np.min(t)) - shift, float(np.max(t)))
    return table.to_utc(t + table.offset(t) - shift)
