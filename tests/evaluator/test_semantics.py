"""SEMANTICS §4-§5 through the evaluator and a real Prometheus: levels, recovery, schedules.

Samples once a minute on the minute; rules use a 1m window, so the value at an evaluation on
the minute is that minute's sample and every expectation below is exact.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from evaluator.helpers import MIN, T0, Recorder, rule
from klaxon.api.common import WEEKDAYS
from klaxon.evaluator import Evaluator
from klaxon.prom.client import PrometheusClient


def profile(start: float, steps: list[tuple[int, float]], end_min: int) -> list[tuple[float, float]]:
    """Minute samples from `start`: value v from minute m on, for each (m, v) in `steps`."""
    out = []
    for i in range(end_min):
        v = next(v for m, v in reversed(steps) if i >= m)
        out.append((start + i * MIN, v))
    return out


def q(metric: str) -> dict:
    return {"metric": metric, "window": "1m"}


async def run(client: PrometheusClient, body: dict, minutes: range, start: float = T0) -> list[tuple]:
    """Cycle once a minute; (minute, to_state, level, reason, notify) of every transition."""
    rec = Recorder()
    ev = Evaluator(client, notifier=rec)
    ev.set_rules([rule("r", body)])
    out = []
    for i in minutes:
        res = await ev.cycle(start + i * MIN)
        for _labels, tr in res.rules["default/r"].transitions:
            out.append((i, tr.to_state, tr.level, tr.reason, tr.notify))
    sent = [(n.transition.to_state, n.transition.reason) for n in rec.seen]
    assert sent == [(s, r) for _, s, _, r, notify in out if notify]  # every notify goes to the notifier
    return out


async def test_levels_escalate_and_deescalate_one_instance(prometheus_server) -> None:
    series = [({"__name__": "temp"}, profile(T0, [(0, 10), (10, 60), (20, 95), (30, 60), (40, 10)], 60))]
    prom = prometheus_server(series=series)
    body = {
        "query": q("temp"),
        "condition": {"operator": "gt"},
        "levels": {"warning": {"threshold": 50}, "critical": {"threshold": 90}},
        "recovery": {"normalCount": 2},
    }
    async with PrometheusClient(prom.url) as client:
        got = await run(client, body, range(5, 50))
    assert got == [
        (10, "Firing", "warning", "Triggered", True),
        (20, "Firing", "critical", "Escalated", True),
        (30, "Firing", "warning", "Deescalated", True),
        (40, "Recovering", "warning", "ConditionCleared", False),
        (41, "Inactive", None, "Recovered", True),
    ]


async def test_recovery_by_count_and_by_window(prometheus_server) -> None:
    # violations at minutes 10, 11, 12 (and a lone one at 30 for the window rule)
    series = [
        ({"__name__": "load"}, profile(T0, [(0, 10), (10, 60), (13, 10)], 60)),
        ({"__name__": "load2"}, profile(T0, [(0, 10), (10, 60), (13, 10), (15, 60), (16, 10)], 60)),
    ]
    prom = prometheus_server(series=series)
    cond = {"operator": "gt", "threshold": 50}
    async with PrometheusClient(prom.url) as client:
        by_count = await run(client, {"query": q("load"), "condition": cond, "recovery": {"normalCount": 3}},
                             range(5, 30))
        # quiet window 5m: the last violation (minute 12) must leave (t-5m, t] -> resolved at 17
        by_window = await run(client, {"query": q("load"), "condition": cond, "recovery": {"window": "5m"}},
                              range(5, 30))
        # a violation inside the quiet window starts it again: last one at 15 -> resolved at 20
        rearmed = await run(client, {"query": q("load2"), "condition": cond, "recovery": {"window": "5m"}},
                            range(5, 30))
    assert [(i, s) for i, s, *_ in by_count] == [(10, "Firing"), (13, "Recovering"), (15, "Inactive")]
    assert [(i, s) for i, s, *_ in by_window] == [(10, "Firing"), (13, "Recovering"), (17, "Inactive")]
    assert [(i, s) for i, s, *_ in rearmed] == [
        (10, "Firing"), (13, "Recovering"), (15, "Firing"), (16, "Recovering"), (20, "Inactive"),
    ]


def last_dst_change(tz: ZoneInfo, before: float) -> date:
    """The local date of the most recent UTC-offset change before `before`."""
    day = datetime.fromtimestamp(before, tz).date() - timedelta(days=1)
    for _ in range(400):
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
        prev = noon - timedelta(days=1)
        if noon.utcoffset() != datetime(prev.year, prev.month, prev.day, 12, tzinfo=tz).utcoffset():
            return day
        day -= timedelta(days=1)
    raise AssertionError("no DST change within 400 days")


async def test_schedule_across_midnight_and_a_dst_change(prometheus_server) -> None:
    """Window Sat 22:00-06:00 Europe/Berlin over the night the clocks change.

    Hot bursts at local 21:30 (before), 22:00 (start, inclusive), 05:30 next morning (inside:
    misplaced by a fixed-offset implementation after a fall-back change), 06:15 (after: inside
    for a fixed-offset implementation after a spring-forward change) and 06:00 (end, exclusive).
    Metric rules evaluate always; only notifications are gated (SEMANTICS §5).
    """
    tz = ZoneInfo("Europe/Berlin")
    change = last_dst_change(tz, T0)
    eve = change - timedelta(days=1)

    def local(d: date, h: int, m: int) -> float:
        return datetime(d.year, d.month, d.day, h, m, tzinfo=tz).timestamp()

    bursts = {
        "before": local(eve, 21, 30),
        "start": local(eve, 22, 0),
        "inside": local(change, 5, 30),
        "end": local(change, 6, 0),
        "after": local(change, 6, 15),
    }
    # distinct metrics per burst keep the cases apart; each is hot for 5 minutes
    start = local(eve, 20, 0)
    series = []
    for name, t in bursts.items():
        m0 = int((t - start) // MIN)
        series.append(({"__name__": "s", "burst": name}, profile(start, [(0, 10), (m0, 95), (m0 + 5, 10)], m0 + 20)))
    prom = prometheus_server(series=series)
    window = {"days": [WEEKDAYS[eve.weekday()]], "start": "22:00", "end": "06:00"}
    notified: dict[str, list[tuple[str, str]]] = {}
    async with PrometheusClient(prom.url) as client:
        for name, t in bursts.items():
            body = {
                "query": {"metric": "s", "selector": {"burst": name}, "window": "1m"},
                "condition": {"operator": "gt", "threshold": 50},
                "schedule": {"timezone": "Europe/Berlin", "windows": [window]},
            }
            rec = Recorder()
            ev = Evaluator(client, notifier=rec)
            ev.set_rules([rule("r", body)])
            states = []
            for k in range(-2, 3):
                res = await ev.cycle(t + k * MIN)
                states.append(res.rules["default/r"].status["state"])
            assert states == ["Inactive", "Inactive", "Firing", "Firing", "Firing"], (name, states)
            for k in range(3, 8):
                await ev.cycle(t + k * MIN)
            notified[name] = [(n.transition.to_state, n.transition.reason) for n in rec.seen]
    fired_and_resolved = [("Firing", "Triggered"), ("Inactive", "Recovered")]
    assert notified == {
        "before": [],
        "start": fired_and_resolved,
        "inside": fired_and_resolved,
        "end": [],
        "after": [],
    }
