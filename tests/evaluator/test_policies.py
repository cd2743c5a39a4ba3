"""Absence rules, mute and disable through the evaluator."""

from __future__ import annotations

from evaluator.helpers import MIN, T0, Recorder, minutes, rule
from klaxon.evaluator import Evaluator
from klaxon.prom.client import PrometheusClient

STOP = T0 + 30 * MIN
SERIES = [
    ({"__name__": "heartbeat", "job": "a"}, minutes(T0, STOP, 1.0)),  # a stops at T0+30m
    ({"__name__": "heartbeat", "job": "b"}, minutes(T0, T0 + 120 * MIN, 1.0)),
    ({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 120 * MIN, 95.0)),
]
ABSENT = {"query": {"metric": "heartbeat", "splitBy": ["job"], "window": "5m"}, "condition": {"type": "absence"}}
HOT = {"query": {"metric": "temp", "splitBy": ["room"], "window": "5m"}, "condition": {"threshold": 80}}


async def test_absence_per_group_fires_for_the_silent_group_only(prometheus_server) -> None:
    prom = prometheus_server(series=SERIES)
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("absent", ABSENT)])
        before = (await ev.cycle(STOP - MIN)).rules["default/absent"].status
        assert before["state"] == "Inactive"
        after = (await ev.cycle(STOP + 6 * MIN)).rules["default/absent"].status
        assert after["state"] == "Firing"
        assert [(a["labels"], a["value"]) for a in after["activeSeries"]] == [({"job": "a"}, 0.0)]


async def test_absence_of_the_whole_selector_fires_without_split(prometheus_server) -> None:
    prom = prometheus_server(series=SERIES)
    body = {"query": {"metric": "never_there", "window": "5m"}, "condition": {"type": "absence"}}
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("gone", body)])
        status = (await ev.cycle(STOP)).rules["default/gone"].status
        assert status["state"] == "Firing" and status["lastEvaluation"]["value"] == 0.0


async def test_whole_selector_absence_carries_the_selector_labels(prometheus_server) -> None:
    """As the compiled `absent_over_time(heartbeat{job="a"}[5m])` alert: labelled job="a", present or not."""
    prom = prometheus_server(series=SERIES)
    body = {"query": {"metric": "heartbeat", "selector": {"job": "a"}, "window": "5m"},
            "condition": {"type": "absence"}}
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("hb", body)])
        for t, state in ((STOP - MIN, "Inactive"), (STOP + 6 * MIN, "Firing")):
            await ev.cycle(t)
            assert [(dict(k), s.state) for k, s in ev.states("uid-default-hb").items()] == [({"job": "a"}, state)]


async def test_per_group_absence_does_not_fire_the_no_data_placeholder(prometheus_server) -> None:
    """Before any group is seen the rule reports NoData (unlabelled); that is no group that went silent."""
    prom = prometheus_server(series=SERIES)
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("absent", ABSENT)])
        assert (await ev.cycle(T0 - 10 * MIN)).rules["default/absent"].status["state"] == "NoData"
        for i in range(1, 4):
            status = (await ev.cycle(T0 + i * MIN)).rules["default/absent"].status
            assert status["state"] == "Inactive", status


async def test_muted_rule_evaluates_and_flags_notifications(prometheus_server) -> None:
    prom = prometheus_server(series=SERIES)
    rec = Recorder()
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client, notifier=rec)
        ev.set_rules([rule("muted", {**HOT, "mute": {"reason": "maintenance"}}), rule("loud", HOT)])
        res = await ev.cycle(STOP)
        assert res.rules["default/muted"].status["state"] == "Firing"
        assert res.rules["default/muted"].status["reason"] == "Muted"
        assert sorted((n.rule.name, n.muted) for n in rec.seen) == [("loud", False), ("muted", True)]


async def test_disabling_a_firing_rule_resolves_it(prometheus_server) -> None:
    prom = prometheus_server(series=SERIES)
    rec = Recorder()
    async with PrometheusClient(prom.url) as client:
        ev = Evaluator(client, notifier=rec)
        ev.set_rules([rule("hot", HOT)])
        await ev.cycle(STOP)
        ev.set_rules([rule("hot", {**HOT, "enabled": False})])
        res = await ev.cycle(STOP + MIN)
        assert res.queries == 0
        assert res.rules["default/hot"].status["state"] == "Disabled"
        assert [(n.transition.to_state, n.transition.reason) for n in rec.seen] == [
            ("Firing", "Triggered"),
            ("Inactive", "Disabled"),
        ]
