"""POST /v1/events against a running app on loopback: auth, validation, limits, idempotency."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.events.http import SeenIds
from klaxon.events.model import EventIn
from support.events import TOKEN, event, make_service, running_service

T0 = datetime(2025, 1, 15, 23, 0, tzinfo=UTC)  # Thursday, midnight in Berlin: inside 22:00-06:00
RULE = AlertRuleSpec.model_validate(
    {
        "events": {"riskThreshold": 30, "objectTypes": ["person"], "minConfidence": 0.7},
        "notify": {"dedupKey": "{camera_id}:{object_type}", "cooldown": "10m"},
    }
)


def config(**events: Any) -> AlertConfigSpec:
    return AlertConfigSpec.model_validate({"events": {"token": {"name": "t", "key": "token"}, **events}})


async def start(cfg: AlertConfigSpec | None = None, **kw: Any) -> Any:
    service, registry = make_service(cfg or config(), **kw)
    service.set_rule("site", "night-person", RULE)
    return running_service(service, registry)


def batch(n: int, start: int = 0, **kw: Any) -> list[dict[str, Any]]:
    return [event(start + i, T0 + timedelta(seconds=start + i), **kw) for i in range(n)]


def matches(text: str, key: str = "front_door:person") -> float:
    for line in text.splitlines():
        if line.startswith("klaxon_event_rule_matches_total{") and f'key="{key}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_valid_batch_and_single_event_are_accepted_and_matched() -> None:
    async with await start() as app:
        status, body, _ = await app.post(batch(50))
        assert (status, body) == (202, {"accepted": 50, "duplicates": 0})
        status, body, _ = await app.post(event("single", T0 + timedelta(minutes=5)))
        assert (status, body) == (202, {"accepted": 1, "duplicates": 0})
        await app.settle()
        assert app.service.processed == 51
        text = await app.metrics()
        assert matches(text) == 51
        assert (
            'klaxon_event_rule_notifications_total{key="front_door:person",namespace="site",rule="night-person"} 1.0'
            in text
        )
        assert 'klaxon_events_received_total{outcome="accepted"} 51.0' in text


@pytest.mark.parametrize(
    ("patch", "field", "needle"),
    [
        ({"risk_score": "80"}, "risk_score", "valid number"),
        ({"risk_score": 101}, "risk_score", "less than or equal to 100"),
        ({"confidence": 1.5}, "confidence", "less than or equal to 1"),
        ({"confidence": True}, "confidence", "valid number"),
        ({"timestamp": "2025-01-15T23:00:00"}, "timestamp", "timezone"),
        ({"timestamp": "yesterday"}, "timestamp", "datetime"),
        ({"timestamp": None}, "timestamp", ""),
        ({"id": 7}, "id", "valid string"),
        ({"id": ""}, "id", "at least 1 character"),
        ({"camera_id": ["a"]}, "camera_id", "valid string"),
        ({"object_types": "person"}, "object_types", "valid array"),
        ({"zone_ids": ["z" * 200]}, "zone_ids", "0: String should have at most 128 characters"),
        ({"labels": {"camera_id": "x"}}, "labels", "reserved"),
        ({"labels": {"bad-name": "x"}}, "labels", "pattern"),
        ({"labels": {"site": 3}}, "labels", "valid string"),
        ({"cameraId": "x"}, "cameraId", "unknown field"),
    ],
)
async def test_each_invalid_event_is_rejected_with_its_field(patch: dict[str, Any], field: str, needle: str) -> None:
    good = batch(3)
    bad = {**good[1], **patch}
    async with await start() as app:
        status, body, _ = await app.post([good[0], bad, good[2]])
        assert status == 400
        errors = body["errors"]
        assert {(e["index"], e["field"]) for e in errors} == {(1, field)}, errors
        assert needle in errors[0]["problem"] and errors[0]["allowed"]
        await app.settle()
        assert app.service.processed == 0  # all or nothing: the valid ones were not taken either
        status, body, _ = await app.post([good[0], good[2]])  # and their ids were not remembered
        assert (status, body["accepted"]) == (202, 2)


async def test_missing_fields_non_objects_and_bad_json() -> None:
    async with await start() as app:
        status, body, _ = await app.post([{"id": "x"}, 5])
        assert status == 400
        assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "timestamp"), (1, None)]
        status, body, _ = await app.post(None, raw=b'[{"id": "x",')
        assert status == 400 and body["errors"][0]["problem"].startswith("Invalid JSON")
        status, body, _ = await app.post(None, raw=b'"just a string"')
        assert status == 400 and "JSON object or array" in body["errors"][0]["problem"]


async def test_duplicate_ids_are_not_double_counted() -> None:
    async with await start() as app:
        first = batch(20)
        assert (await app.post(first))[1] == {"accepted": 20, "duplicates": 0}
        assert (await app.post(first))[1] == {"accepted": 0, "duplicates": 20}  # retried batch
        mixed = first[:5] + batch(5, start=100) + batch(5, start=100)  # seen + new + in-batch repeats
        assert (await app.post(mixed))[1] == {"accepted": 5, "duplicates": 10}
        await app.settle()
        assert app.service.processed == 25
        text = await app.metrics()
        assert matches(text) == 25
        assert 'klaxon_events_received_total{outcome="duplicate"} 30.0' in text


async def test_over_size_answers_413() -> None:
    async with await start(config(maxBatch=10), max_body_bytes=4096) as app:
        status, body, _ = await app.post(batch(11))
        assert status == 413 and "exceeds maxBatch 10" in body["errors"][0]["problem"]
        assert (await app.post(batch(10)))[0] == 202
        status, body, _ = await app.post([event(1, T0, labels={"note": "x" * 250}) for _ in range(20)])
        assert status == 413 and "bytes" in body["errors"][0]["problem"]


async def test_queue_full_answers_429_with_retry_after_and_the_retry_succeeds() -> None:
    async with await start(config(queueSize=10)) as app:
        gate = asyncio.Event()
        real = app.service.process

        async def held(b: list[EventIn]) -> Any:
            await gate.wait()
            return await real(b)

        app.service.process = held  # type: ignore[method-assign]
        assert (await app.post(batch(6)))[0] == 202
        assert (await app.post(batch(4, start=6)))[0] == 202  # exactly full
        status, body, headers = await app.post(batch(1, start=10))
        assert status == 429 and int(headers["Retry-After"]) >= 1 and "queue full" in body["errors"][0]["problem"]
        status, body, _ = await app.post(batch(3))  # duplicates only: nothing to queue, still 202
        assert (status, body) == (202, {"accepted": 0, "duplicates": 3})
        gate.set()
        await app.settle()
        assert (await app.post(batch(1, start=10)))[1] == {"accepted": 1, "duplicates": 0}  # not remembered at 429
        await app.settle()
        assert app.service.processed == 11


async def test_bearer_token_is_required_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with await start() as app:
        assert (await app.post(batch(1), token=None))[0] == 401
        status, _, headers = await app.post(batch(1), token="wrong-token")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert (await app.post(batch(1), token=TOKEN))[0] == 202
        await app.settle()
        assert app.service.processed == 1
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text


def test_seen_ids_are_bounded_and_expire() -> None:
    now = [0.0]
    seen = SeenIds(max_size=3, ttl_s=10, clock=lambda: now[0])
    seen.add_all(["a", "b", "c", "d"])
    assert "a" not in seen and "d" in seen and len(seen) == 3
    now[0] = 11
    assert "d" not in seen
