"""Grouping (AlertConfig spec.grouping): minEvents within the window open an alert; a quiet window closes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from klaxon.events.grouping import Grouper

T0 = datetime(2025, 1, 15, 14, 0, tzinfo=UTC)


def test_grouping_window_min_events_and_close() -> None:
    g = Grouper(window_s=120, min_events=3)
    at = [T0 + timedelta(seconds=s) for s in (0, 30, 60, 90, 200, 330, 340, 350)]
    out = [g.observe("k", t).status for t in at]
    assert out == [
        "belowMinEvents",
        "belowMinEvents",
        "opened",
        "absorbed",
        "absorbed",
        "belowMinEvents",
        "belowMinEvents",
        "opened",
    ]  # closed after 120 s without events
    g2 = Grouper(window_s=120, min_events=3)
    assert [g2.observe("k", T0 + timedelta(seconds=s)).status for s in (0, 60, 120)] == [
        "belowMinEvents",
        "belowMinEvents",
        "belowMinEvents",
    ]  # (t-120, t] is left-open
