"""`engine: prometheus` rules: status read from a real Prometheus running the compiled rule file.

Prometheus evaluates the compiled PrometheusRule groups (`klaxon.compile.rule_file`) on live
data (`vector(...)` expressions, so no scraping is needed); the evaluator reads all of them with
ONE `/api/v1/rules` call per cycle and reports Firing / Pending / Inactive per alert instance.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from evaluator.helpers import Recorder, rule
from klaxon.compile import compile_rule, rule_file
from klaxon.evaluator import Evaluator, RuleRef
from klaxon.prom.client import PrometheusClient

ROOMS = 'label_replace(vector(95), "room", "lab", "", "") or label_replace(vector(10), "room", "hall", "", "")'
BASE: dict[str, Any] = {"query": {"expr": ROOMS, "splitBy": ["room"]}, "evaluation": {"interval": "1s"}}
BODIES: dict[str, dict[str, Any]] = {
    "hot": {**BASE, "condition": {"operator": "gt", "threshold": 80}, "labels": {"team": "infra"}},
    "slow": {**BASE, "condition": {"operator": "gt", "threshold": 80}, "trigger": {"for": "1h"}},
    "cold": {**BASE, "condition": {"operator": "gt", "threshold": 1000}},
    "leveled": {
        **BASE,
        "condition": {"operator": "gt"},
        "levels": {"warning": {"threshold": 50}, "critical": {"threshold": 90}},
    },
}


def refs(names: list[str] | None = None) -> list[RuleRef]:
    return [rule(n, BODIES[n], ns="mon") for n in names or sorted(BODIES)]


def compiled_rule_file() -> dict[str, Any]:
    groups: list[dict[str, Any]] = []
    for r in refs():
        res = compile_rule(r.name, r.namespace, r.spec, uid=r.uid)
        assert res.engine == "prometheus" and not res.problems, (r.name, res.problems)
        groups += res.groups
    return rule_file(groups)


async def until_evaluated(client: PrometheusClient, timeout: float = 20.0) -> None:
    """Wait until Prometheus evaluated every group and the `hot` alert is firing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        groups = await client.rules()
        done = groups and all(not g["lastEvaluation"].startswith("0001") for g in groups)
        firing = any(a["state"] == "firing" for g in groups for r in g["rules"] for a in r.get("alerts", []))
        if done and firing:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("Prometheus did not evaluate the compiled rules in time")


async def test_prometheus_rules_status_from_one_rules_call_per_cycle(prometheus_server) -> None:
    prom = prometheus_server(rules=compiled_rule_file())
    rec = Recorder()
    async with PrometheusClient(prom.url) as client:
        await until_evaluated(client)
        ev = Evaluator(client, notifier=rec)
        ev.set_rules(refs())
        before_rules, before_query = prom.http_requests("/api/v1/rules"), prom.http_requests("/api/v1/query")
        res = await ev.cycle(time.time(), force=True)
        assert prom.http_requests("/api/v1/rules") - before_rules == 1  # one call for all four rules
        assert prom.http_requests("/api/v1/query") == before_query  # nothing evaluated here
        assert res.queries == 1 and res.query_errors == 0
        st = {k.split("/")[1]: rr.status for k, rr in res.rules.items()}

        hot = st["hot"]
        assert hot["engine"] == "prometheus"
        assert (hot["state"], hot["level"], hot["activeSeriesCount"]) == ("Firing", "warning", 1)
        (series,) = hot["activeSeries"]
        assert series["labels"] == {"room": "lab"}  # klaxon_*, severity and spec.labels are rule labels
        assert series["value"] == 95.0 and series["since"] is not None
        assert hot["firingSince"] == series["since"]
        assert st["slow"]["state"] == "Pending" and st["slow"]["activeSeries"][0]["state"] == "Pending"
        assert st["cold"]["state"] == "Inactive" and st["cold"]["activeSeries"] == []
        # warning and critical alerts of one instance are one series at the highest level
        assert (st["leveled"]["state"], st["leveled"]["level"]) == ("Firing", "critical")
        assert [a["labels"] for a in st["leveled"]["activeSeries"]] == [{"room": "lab"}]
        # lastEvaluation is the group's, from Prometheus (seconds ago), not the cycle time
        for s in st.values():
            assert s["lastEvaluation"]["time"] is not None
        assert sorted((n.rule.name, n.transition.to_state, n.labels["room"]) for n in rec.seen) == [
            ("hot", "Firing", "lab"),
            ("leveled", "Firing", "lab"),
        ]
        rec.seen.clear()
        again = await ev.cycle(time.time(), force=True)
        assert rec.seen == [] and again.rules["mon/hot"].status["firingSince"] == hot["firingSince"]

        # a restart restores from status: no duplicate Firing notification
        rec2 = Recorder()
        ev2 = Evaluator(client, notifier=rec2)
        ev2.set_rules([rule(n, BODIES[n], status=st[n], ns="mon") for n in sorted(BODIES)])
        await ev2.cycle(time.time())
        assert rec2.seen == []

        # Prometheus away: Error reason, the known alert stands, nothing resolved
        prom.stop()
        down = await ev.cycle(time.time(), force=True)
        assert down.query_errors == 1
        assert down.rules["mon/hot"].status["state"] == "Firing"
        assert down.rules["mon/hot"].status["reason"] == "QueryError"
        assert down.rules["mon/cold"].status["state"] == "Error"
        assert rec.seen == []
        prom.start()
        await until_evaluated(client)
        back = await ev.cycle(time.time(), force=True)
        assert back.rules["mon/hot"].status["state"] == "Firing" and rec.seen == []


async def test_prometheus_rule_not_loaded_is_an_error_and_a_resolved_alert_notifies(prometheus_server) -> None:
    prom = prometheus_server(rules=compiled_rule_file())
    rec = Recorder()
    async with PrometheusClient(prom.url) as client:
        await until_evaluated(client)
        ev = Evaluator(client, notifier=rec)
        missing = rule("missing", BODIES["hot"], ns="elsewhere")
        # a status from before: `hot` was firing for room "hall" too, which Prometheus no longer reports
        ev.set_rules([*refs(["hot"]), missing])
        first = await ev.cycle(time.time(), force=True)
        assert first.rules["elsewhere/missing"].status["state"] == "Error"
        assert first.rules["elsewhere/missing"].status["reason"] == "NotLoaded"
        hot_status = first.rules["mon/hot"].status
        hall = {**hot_status["activeSeries"][0], "labels": {"room": "hall"}}
        before = {**hot_status, "activeSeries": [*hot_status["activeSeries"], hall]}
        restored = rule("hot", BODIES["hot"], status=before, ns="mon")
        rec.seen.clear()
        ev2 = Evaluator(client, notifier=rec)
        ev2.set_rules([restored])
        await ev2.cycle(time.time())
        assert [(n.labels, n.transition.to_state, n.transition.reason) for n in rec.seen] == [
            ({"room": "hall"}, "Inactive", "Recovered")
        ]


async def test_an_alert_that_fires_and_ends_between_two_reads_is_notified_once_and_shown(prometheus_server) -> None:
    """Prometheus evaluates the rule every second on live data; the evaluator reads it only twice.
    The alert fires for a few seconds in between: not in either /api/v1/rules answer, yet the
    ALERTS samples Prometheus wrote meanwhile make it a Firing then a resolution, notified once
    each, and an entry of status.recentFirings."""
    from support.live import METRIC, Exporter

    exporter = Exporter()
    await exporter.start()
    exporter.values.update({"a": 10.0, "b": 10.0})
    body = {
        "query": {"metric": METRIC, "splitBy": ["series"], "window": "1s", "aggregation": "last"},
        "condition": {"operator": "gt", "threshold": 50},
        "evaluation": {"interval": "1s", "engine": "prometheus"},
    }
    ref = rule("blip", body, ns="mon")
    res = compile_rule(ref.name, ref.namespace, ref.spec, uid=ref.uid)
    assert res.engine == "prometheus" and not res.problems, res.problems
    prom = prometheus_server(rules=rule_file(res.groups), scrape=[exporter.target], scrape_interval="200ms")
    rec = Recorder()
    try:
        async with PrometheusClient(prom.url) as client:
            ev = Evaluator(client, notifier=rec)
            ev.upsert(ref)
            first = await ev.cycle(time.time())
            assert first.rules["mon/blip"].status["state"] == "Inactive"

            exporter.values["a"] = 95.0  # a blip of a few seconds on series a
            await _until(client, lambda alerts: any(a["state"] == "firing" for a in alerts), "the blip firing")
            await asyncio.sleep(2)
            exporter.values["a"] = 10.0
            await _until(client, lambda alerts: not alerts, "the blip resolved in Prometheus")

            second = await ev.cycle(time.time())
            status = second.rules["mon/blip"].status
            assert status["state"] == "Inactive"  # nothing is firing now...
            seen = [(n.labels, n.transition.from_state, n.transition.to_state) for n in rec.seen]
            assert seen == [({"series": "a"}, "Inactive", "Firing"), ({"series": "a"}, "Firing", "Inactive")]
            (episode,) = status["recentFirings"]  # ...but it fired, and the status says when
            assert episode["labels"] == {"series": "a"} and episode["since"] < episode["until"]
            assert second.queries == 2  # /api/v1/rules plus one ALERTS history query

            third = await ev.cycle(time.time() + 1)  # the overlap of the next window: no duplicate
            assert len(rec.seen) == 2 and third.rules["mon/blip"].status["recentFirings"] == [episode]
    finally:
        await exporter.stop()


async def _until(client: PrometheusClient, check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alerts = [a for g in await client.rules() for r in g["rules"] for a in r.get("alerts", [])]
        if check(alerts):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
