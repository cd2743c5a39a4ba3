"""PrometheusClient against a real Prometheus over backfilled data."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from klaxon.prom.client import PrometheusClient, PrometheusError

T0 = (int(time.time()) // 3600 - 72) * 3600  # three days ago, on the hour


def series() -> list:
    return [
        ({"__name__": "temp", "device": "a", "site": 'x"y'}, [(T0 + 60 * i, float(i)) for i in range(60)]),
        ({"__name__": "temp", "device": "b", "site": "z"}, [(T0 + 60 * i, 100.0 + i) for i in range(60)]),
    ]


RULES = {
    "groups": [
        {
            "name": "g",
            "interval": "1s",
            "rules": [
                {"record": "always_one", "expr": "vector(1)"},
                {"alert": "AlwaysFiring", "expr": "vector(1) > 0", "labels": {"severity": "warning"}},
            ],
        }
    ]
}


async def test_query_and_query_range(prometheus_server) -> None:
    prom = prometheus_server(series=series())
    async with PrometheusClient(prom.url) as client:
        samples = await client.query('temp{site="x\\"y"}', T0 + 600)
        assert len(samples) == 1
        assert samples[0].labels == {"__name__": "temp", "device": "a", "site": 'x"y'}
        assert samples[0].value == 10.0
        # Off the sample grid: Prometheus 2.x windows are [t-W, t], 3.x (and SEMANTICS) (t-W, t].
        avg = await client.query("avg by (device) (avg_over_time(temp[5m]))", T0 + 630)
        # (t-5m, t] holds minutes 6..10 for device a
        assert {s.labels["device"]: s.value for s in avg} == {"a": 8.0, "b": 108.0}
        scalar = await client.query("1 + 1", T0)
        assert scalar[0].value == 2.0 and scalar[0].labels == {}
        rng = await client.query_range("temp", T0, T0 + 59 * 60, 60)
        by_dev = {r.labels["device"]: r for r in rng}
        assert set(by_dev) == {"a", "b"}
        np.testing.assert_array_equal(by_dev["a"].times, T0 + 60.0 * np.arange(60))
        np.testing.assert_array_equal(by_dev["b"].values, 100.0 + np.arange(60))
        assert (await client.query("temp", T0 - 86400)) == []


async def test_raw_range_vector_via_instant_query_is_rejected_as_error(prometheus_server) -> None:
    prom = prometheus_server(series=series())
    async with PrometheusClient(prom.url) as client:
        with pytest.raises(PrometheusError) as err:
            await client.query("sum(", T0)
        assert err.value.status == 400 and err.value.error_type == "bad_data"


async def test_rules_and_alerts(prometheus_server) -> None:
    prom = prometheus_server(rules=RULES)
    async with PrometheusClient(prom.url) as client:
        deadline = time.monotonic() + 20
        alerts: list = []
        while time.monotonic() < deadline:
            alerts = await client.alerts()
            if alerts:
                break
            await asyncio.sleep(0.2)
        assert [a["labels"]["alertname"] for a in alerts] == ["AlwaysFiring"]
        groups = await client.rules()
        assert [g["name"] for g in groups] == ["g"]
        assert {r["name"] for r in groups[0]["rules"]} == {"always_one", "AlwaysFiring"}


async def test_connection_errors_retry_then_raise(prometheus_server) -> None:
    prom = prometheus_server()
    prom.stop()
    client = PrometheusClient(prom.url, retries=2, backoff=0.01, timeout=2)
    try:
        with pytest.raises(PrometheusError):
            await client.query("1", T0)
        assert client.requests == 3  # one try + two retries
        prom.start()
        assert (await client.query("1", T0))[0].value == 1.0  # the same session recovers
    finally:
        await client.close()


async def test_auth_header_is_sent(prometheus_server) -> None:
    # Prometheus ignores the Authorization header; the request must still succeed with it.
    prom = prometheus_server()
    async with PrometheusClient(prom.url, token="s3cret") as client:
        assert (await client.query("2", T0))[0].value == 2.0
    with pytest.raises(ValueError):
        PrometheusClient(prom.url, token="a", basic_auth=("u", "p"))


async def test_a_config_without_prometheus_fails_every_query_with_the_reason() -> None:
    """An events-only AlertConfig runs an evaluator too: its metric rules (if any) get this error."""
    from klaxon.prom.client import PrometheusClient, PrometheusError

    async with PrometheusClient.unconfigured_because("no spec.prometheus endpoint") as prom:
        with pytest.raises(PrometheusError, match=r"no spec\.prometheus endpoint"):
            await prom.query("up", 0.0)
        with pytest.raises(PrometheusError, match=r"no spec\.prometheus endpoint"):
            await prom.rules()
        assert prom.requests == 0


async def test_an_error_answer_keeps_its_words_whatever_its_data_holds() -> None:
    """Some proxies and compatible APIs send ``"data": null`` with an error: the user still sees the
    server's error, not "unexpected answer" (which stays for a success of the wrong shape)."""
    from aiohttp import web

    answers = {
        "/api/v1/query": (422, {"status": "error", "errorType": "bad_data", "error": "parse error at 3", "data": None}),
        "/api/v1/rules": (200, {"status": "success", "data": ["not", "a", "dict"]}),
    }

    async def handle(request: web.Request) -> web.Response:
        status, body = answers[request.path]
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with PrometheusClient(f"http://127.0.0.1:{port}", retries=0) as prom:
            with pytest.raises(PrometheusError, match="parse error at 3") as refused:
                await prom.query("up{", T0)
            assert refused.value.error_type == "bad_data"
            with pytest.raises(PrometheusError, match="unexpected answer"):
                await prom.rules()
    finally:
        await runner.cleanup()
