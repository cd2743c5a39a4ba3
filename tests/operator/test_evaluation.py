"""Ready means in effect: the Evaluator condition of evaluator-run rules, from lastEvaluation and the Lease."""

from __future__ import annotations

import datetime

import pytest

from klaxon.operator.evaluation import Shard, evaluation_condition, event_condition, last_evaluation, stale_after

NOW = datetime.datetime(2026, 12, 6, 12, 0, 0, tzinfo=datetime.UTC)
SHARD = Shard(("mon", "default"), 1, 3, "pod-a")
NOBODY = Shard(("mon", "default"), 1, 3, None)


def status_at(seconds_ago: float) -> dict[str, object]:
    t = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"lastEvaluation": {"time": t.strftime("%Y-%m-%dT%H:%M:%SZ")}}


def test_stale_after_is_two_heartbeats_and_two_evaluations() -> None:
    assert stale_after(60, 300) == 720


@pytest.mark.parametrize(
    ("status", "shard", "ok", "reason", "words"),
    [
        (status_at(30), SHARD, True, "Evaluated", "shard 1/3 of AlertConfig mon/default"),
        (status_at(720), NOBODY, True, "Evaluated", "shard 1/3"),  # fresh beats a missing Lease
        (status_at(721), SHARD, False, "EvaluationStale", "older than 12m"),
        (status_at(721), NOBODY, False, "EvaluatorNotReady", "last evaluation at 2026-12-06T11:47:59Z"),
        ({}, NOBODY, False, "EvaluatorNotReady", "Lease mon/klaxon-eval-default-1 is not held"),
        ({}, SHARD, False, "AwaitingEvaluation", "held by pod-a"),
        ({"lastEvaluation": {"time": "not a time"}}, SHARD, False, "AwaitingEvaluation", "not evaluated"),
    ],
)
def test_evaluation_condition(
    status: dict[str, object], shard: Shard, ok: bool, reason: str, words: str
) -> None:
    cond = evaluation_condition(status, shard, 60, 300, NOW)
    assert (cond.ok, cond.reason) == (ok, reason)
    assert words in cond.message, cond.message


def test_messages_carry_no_age_so_status_is_not_rewritten_as_time_passes() -> None:
    a = evaluation_condition(status_at(800), SHARD, 60, 300, NOW)
    b = evaluation_condition(status_at(800), SHARD, 60, 300, NOW + datetime.timedelta(minutes=5))
    assert a == b


def test_event_rules_follow_the_lease_of_shard_zero() -> None:
    assert event_condition(Shard(("mon", "cfg"), 0, 2, "pod-b")).ok is True
    missing = event_condition(Shard(("mon", "cfg"), 0, 2, None))
    assert (missing.ok, missing.reason) == (False, "EvaluatorNotReady")
    assert "mon/klaxon-eval-cfg-0" in missing.message


def test_last_evaluation_reads_rfc3339() -> None:
    assert last_evaluation(status_at(0)) == NOW
    assert last_evaluation({"lastEvaluation": {"time": "2026-12-06T12:00:00+01:00"}}) == NOW - datetime.timedelta(
        hours=1
    )
    assert last_evaluation(None) is None and last_evaluation({"lastEvaluation": {}}) is None
