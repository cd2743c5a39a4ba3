"""`klaxon evaluator` end to end: emulated Kubernetes API + real Prometheus; /metrics and /healthz."""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from evaluator.helpers import MIN, T0, minutes, run_loop
from klaxon.cli.main import build_parser
from klaxon.evaluator import CycleResult, shard_of
from klaxon.evaluator.server import CycleHealth, EvaluatorMetrics, serve_http
from klaxon.kube.client import KubeClient, Ref
from support.prometheus import free_port

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"


def ar(name: str, ns: str, config: str | None = "main") -> dict:
    spec: dict = {
        "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
        "condition": {"operator": "gt", "threshold": 80},
        "evaluation": {"engine": "evaluator"},
    }
    if config is not None:
        spec["configRef"] = {"name": config}
    return {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertRule", "metadata": {"name": name}, "spec": spec}


async def test_rule_status_is_patched_through_the_status_subresource(kube, kube_api) -> None:
    kube.create_object(AR, ar("r1", "team"), namespace="team")
    client, ref = KubeClient(kube_api), Ref.klaxon("AlertRule", "team", "r1")
    await client.patch_status(ref, {"state": "Firing", "activeSeriesCount": 1})
    await client.patch_status(ref, {"activeSeriesCount": 2})  # merge: state kept
    obj = kube.get_object(AR, "r1", "team")
    assert obj is not None and obj["status"] == {"state": "Firing", "activeSeriesCount": 2}
    assert obj["spec"]["condition"]["threshold"] == 80


async def test_one_cycle_writes_status_of_this_configs_rules_only(
    kube, kube_api, prometheus_server, monkeypatch, tmp_path
) -> None:
    now = T0 + 60 * MIN
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 120 * MIN, 95.0))])
    kube.create_object(
        AC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertConfig",
            "metadata": {"name": "main"},
            "spec": {"prometheus": {"url": prom.url}},
        },
        namespace="mon",
    )
    kube.create_object(AR, ar("mine", "mon"), namespace="mon")
    kube.create_object(AR, ar("other", "mon", config="elsewhere"), namespace="mon")
    kube.create_object(AR, ar("default-cfg", "mon", config=None), namespace="mon")

    args = build_parser().parse_args(
        ["evaluator", "--config", "mon/main", "--once", "--metrics-port", "0", "--state-dir", str(tmp_path)]
    )
    assert await run_loop(args, kube_api, asyncio.Event(), clock=lambda: now) == 0  # the backfilled past
    mine = kube.get_object(AR, "mine", "mon")
    assert mine is not None and mine["status"]["state"] == "Firing"
    assert mine["status"]["activeSeries"][0]["labels"] == {"room": "lab"}
    assert "status" not in (kube.get_object(AR, "other", "mon") or {})
    assert "status" not in (kube.get_object(AR, "default-cfg", "mon") or {})


async def test_metrics_and_healthz_endpoints() -> None:
    metrics, health = EvaluatorMetrics(), CycleHealth(stale_s=60)
    metrics.observe(CycleResult(t=0, queries=1, query_errors=0, duration_s=0.1), {"ns/a": "Pending", "ns/c": "Firing"})
    metrics.observe(
        CycleResult(t=0, queries=2, query_errors=1, duration_s=0.15), {"ns/a": "Firing", "ns/b": "Inactive"}
    )
    port = free_port()
    runner = await serve_http(metrics, health, port, host="127.0.0.1")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
            assert 'klaxon_evaluator_rules{state="Firing"} 1.0' in text
            assert "klaxon_evaluator_query_errors_total 1.0" in text
            assert "klaxon_evaluator_queries_total 3.0" in text
            assert "klaxon_evaluator_cycle_duration_seconds_count 2.0" in text
            # one series per rule, on its current state; a rule that left is gone
            states = sorted(line for line in text.splitlines() if line.startswith("klaxon_rule_state{"))
            assert states == [
                'klaxon_rule_state{namespace="ns",rule="a",state="Firing"} 1.0',
                'klaxon_rule_state{namespace="ns",rule="b",state="Inactive"} 1.0',
            ]
            async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
            health.stale_s = 0
            async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 503
    finally:
        await runner.cleanup()


def test_cli_parses_shard_and_config() -> None:
    args = build_parser().parse_args(["evaluator", "--config", "mon/main", "--shard", "1/3"])
    assert isinstance(args, argparse.Namespace) and args.shard == "1/3" and args.metrics_port == 8081
    assert shard_of("x", 3) in (0, 1, 2)
