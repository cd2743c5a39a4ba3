"""Grouping (AlertConfig ``spec.grouping``, SEMANTICS §6): matches of one group key open an alert
when ``minEvents`` fall within the window; it absorbs later events and closes after a full window
without events. Pure: event time only, no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

GroupStatus = Literal["opened", "absorbed", "belowMinEvents"]


@dataclass
class _Group:
    times: deque[datetime] = field(default_factory=deque)
    open: bool = False
    last_event: datetime | None = None
    episode: str = ""


@dataclass(frozen=True)
class GroupOutcome:
    status: GroupStatus
    count: int
    episode: str
    #: the earliest event in the window (for an opened alert: its first event)
    first: datetime | None = None


class Grouper:
    """An alert opens for a key when matches in ``(t - window, t]`` ≥ minEvents; it absorbs later
    events and closes after a full window without events. Events must come in time order."""

    def __init__(self, window_s: float, min_events: int) -> None:
        self.window_s, self.min_events = window_s, min_events
        self.groups: dict[str, _Group] = {}

    def observe(self, key: str, at: datetime) -> GroupOutcome:
        g = self.groups.setdefault(key, _Group())
        if g.open and g.last_event is not None and (at - g.last_event).total_seconds() >= self.window_s:
            g.open = False
        g.times.append(at)
        while g.times and (at - g.times[0]).total_seconds() >= self.window_s:
            g.times.popleft()
        g.last_event = at
        if g.open:
            return GroupOutcome("absorbed", len(g.times), g.episode, g.times[0])
        if len(g.times) >= self.min_events:
            g.open, g.episode = True, f"{key}@{at.isoformat()}"
            return GroupOutcome("opened", len(g.times), g.episode, g.times[0])
        return GroupOutcome("belowMinEvents", len(g.times), "", g.times[0])

    def restore(
        self, key: str, times: Iterable[datetime], is_open: bool, last_event: datetime | None, episode: str
    ) -> None:
        """Put back a group saved by an earlier process (``klaxon.events.state``)."""
        self.groups[key] = _Group(deque(times), is_open, last_event, episode)

    def is_open(self, key: str, at: datetime) -> bool:
        g = self.groups.get(key)
        return bool(g and g.open and g.last_event and (at - g.last_event).total_seconds() < self.window_s)
