"""Prometheus going away, restarts of the evaluator, sharding and rate-limited status writes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from evaluator.helpers import MIN, T0, Recorder, minutes, rule
from klaxon.evaluator import Evaluator, StatusWriter, assigned, parse_shard, shard_of
from klaxon.prom.client import PrometheusClient

SERIES = [
    ({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 180 * MIN, 95.0)),
    ({"__name__": "temp", "room": "hall"}, minutes(T0, T0 + 180 * MIN, 20.0)),
]
HOT = {
    "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
    "condition": {"operator": "gt", "threshold": 80},
}


def client_for(url: str) -> PrometheusClient:
    return PrometheusClient(url, retries=1, backoff=0.01, timeout=3)


async def test_prometheus_down_is_error_without_false_resolution(prometheus_server) -> None:
    prom = prometheus_server(series=SERIES)
    rec = Recorder()
    keep = rule("keep", {**HOT, "onError": "KeepLast"})
    err = rule("err", {**HOT, "onError": "Error"})
    t = T0 + 30 * MIN
    async with client_for(prom.url) as client:
        ev = Evaluator(client, notifier=rec)
        ev.set_rules([keep, err])
        res = await ev.cycle(t)
        assert {k: r.status["state"] for k, r in res.rules.items()} == {
            "default/keep": "Firing",
            "default/err": "Firing",
        }
        rec.seen.clear()

        prom.stop()
        down = await ev.cycle(t + MIN)
        assert down.query_errors == 1 and down.queries == 1
        kept = down.rules["default/keep"].status
        assert kept["state"] == "Firing" and kept["reason"] == "QueryError"
        assert "lab" in str(kept["activeSeries"][0]["labels"])
        assert down.rules["default/keep"].transitions == []
        errored = down.rules["default/err"].status
        assert errored["state"] == "Error" and errored["reason"] == "QueryError"
        # nothing was resolved: no transition to Inactive for either rule
        assert all(n.transition.to_state != "Inactive" for n in rec.seen)
        assert {(n.rule.name, n.transition.to_state) for n in rec.seen} == {("err", "Error")}
        rec.seen.clear()

        prom.start()
        back = await ev.cycle(t + 2 * MIN)
        assert back.query_errors == 0
        assert back.rules["default/keep"].status["state"] == "Firing"
        assert back.rules["default/keep"].transitions == []
        assert back.rules["default/keep"].status["reason"] != "QueryError"
        assert back.rules["default/err"].status["state"] == "Firing"
        assert all(n.rule.name == "err" for n in rec.seen)


async def test_prometheus_down_before_any_data_is_error(prometheus_server) -> None:
    prom = prometheus_server(series=SERIES)
    prom.stop()
    async with client_for(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("err", HOT)])
        status = (await ev.cycle(T0 + 30 * MIN)).rules["default/err"].status
        assert status["state"] == "Error" and status["reason"] == "QueryError"
        assert "/api/v1/query" in status["lastEvaluation"]["message"]
        prom.start()
        status = (await ev.cycle(T0 + 31 * MIN)).rules["default/err"].status
        assert status["state"] == "Firing"
        assert [a["labels"] for a in status["activeSeries"]] == [{"room": "lab"}]  # the Error placeholder is gone


async def test_restore_from_status_sends_no_duplicate_firing(prometheus_server) -> None:
    prom = prometheus_server(series=SERIES)
    t = T0 + 30 * MIN
    async with client_for(prom.url) as client:
        first = Evaluator(client, notifier=(rec1 := Recorder()))
        first.set_rules([rule("hot", HOT)])
        status = (await first.cycle(t)).rules["default/hot"].status
        assert [n.transition.to_state for n in rec1.seen] == ["Firing"]

        # a new process: only the status written to the CR survives
        rec2 = Recorder()
        second = Evaluator(client, notifier=rec2)
        second.set_rules([rule("hot", HOT, status=status)])
        res = await second.cycle(t + MIN)
        assert rec2.seen == []
        assert res.rules["default/hot"].status["state"] == "Firing"
        assert res.rules["default/hot"].status["firingSince"] == status["firingSince"]

        # without the status the same restart would notify again: the test can tell the difference
        rec3 = Recorder()
        third = Evaluator(client, notifier=rec3)
        third.set_rules([rule("hot", HOT)])
        await third.cycle(t + MIN)
        assert [n.transition.to_state for n in rec3.seen] == ["Firing"]


def test_two_shards_split_rules_without_overlap_or_gap() -> None:
    uids = [f"7c1e{i:04d}-uid" for i in range(50)]

    class R:
        def __init__(self, uid: str) -> None:
            self.uid = uid

    rules = [R(u) for u in uids]
    a = {r.uid for r in assigned(rules, 0, 2)}
    b = {r.uid for r in assigned(rules, 1, 2)}
    assert a.isdisjoint(b) and a | b == set(uids)
    assert a and b  # both shards get work
    for u in uids:  # stable: sha256, not Python's salted hash()
        assert shard_of(u, 2) == int.from_bytes(hashlib.sha256(u.encode()).digest()[:8], "big") % 2
    assert parse_shard("1/2") == (1, 2)
    with pytest.raises(ValueError):
        parse_shard("2/2")
    with pytest.raises(ValueError):
        assigned(rules, 3, 2)


async def test_status_writer_writes_on_change_and_heartbeat(prometheus_server) -> None:
    prom = prometheus_server(series=SERIES)
    written: list[tuple[str, str, dict[str, Any]]] = []

    async def write(ns: str, name: str, status: dict[str, Any]) -> None:
        written.append((ns, name, status))

    writer = StatusWriter(write, heartbeat_s=5 * MIN)
    t = T0 + 30 * MIN
    async with client_for(prom.url) as client:
        ev = Evaluator(client)
        ev.set_rules([rule("hot", HOT)])
        for i in range(4):  # Firing, unchanged, at t .. t+3m
            st = (await ev.cycle(t + i * MIN)).rules["default/hot"].status
            await writer.maybe_write("default", "hot", st, t + i * MIN)
        assert len(written) == 1
        st = (await ev.cycle(t + 5 * MIN)).rules["default/hot"].status
        assert await writer.maybe_write("default", "hot", st, t + 5 * MIN)  # heartbeat
        assert len(written) == 2 and written[1][2]["lastEvaluation"]["time"] != written[0][2]["lastEvaluation"]["time"]
        # a change is written at once
        ev.set_rules([rule("hot", {**HOT, "condition": {"operator": "gt", "threshold": 99}})])
        st = (await ev.cycle(t + 6 * MIN)).rules["default/hot"].status
        assert st["state"] == "Inactive"  # normalCount 1: recovered at the first normal point
        assert await writer.maybe_write("default", "hot", st, t + 6 * MIN)
        assert writer.writes == 3
