"""Is an evaluator-run rule in effect? A recent ``lastEvaluation`` says so; otherwise say what is missing.

The operator cannot see inside an evaluator, but it sees two facts: the rule's
``status.lastEvaluation.time`` (the evaluator writes it on every change and at least every
``statusInterval`` as a heartbeat) and the shard's Lease (held and renewed by the shard's active
replica). A fresh evaluation is proof enough; without one, the Lease tells "nobody runs this
shard" from "it runs but has not reported (yet)". Event rules are not evaluated on a clock: the
leader of shard 0 takes every event (``POST /v1/events``), so its Lease is what puts them in effect.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec
from ..api.common import format_duration, parse_duration
from ..api.refs import effective_interval
from ..api.sharding import shard_of
from ..kube.client import KubeError, Ref
from ..kube.lease import lease_expired
from .build import deployment_name
from .conditions import Cond
from .runtime import Runtime


@dataclass(frozen=True)
class Shard:
    """The shard that evaluates a rule, and who (if anyone) holds its Lease right now."""

    config: tuple[str, str]
    index: int
    count: int
    holder: str | None

    @property
    def lease(self) -> str:
        return deployment_name(self.config[1], self.index)

    def __str__(self) -> str:
        return f"shard {self.index}/{self.count} of AlertConfig {self.config[0]}/{self.config[1]}"


def stale_after(interval_s: float, status_interval_s: float) -> float:
    """Seconds without a new ``lastEvaluation`` after which it no longer proves the rule is evaluated.

    Two heartbeats and two evaluations: a heartbeat deferred once by the status-write budget, or a
    slow cycle, is not an outage.
    """
    return 2 * status_interval_s + 2 * interval_s


def last_evaluation(status: Mapping[str, Any] | None) -> datetime.datetime | None:
    value = ((status or {}).get("lastEvaluation") or {}).get("time")
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _stamp(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_condition(shard: Shard) -> Cond:
    """The ``Evaluator`` condition of an event rule: is anyone taking its events?"""
    if shard.holder is None:
        return Cond(
            "Evaluator",
            False,
            "EvaluatorNotReady",
            f"no evaluator takes events for {shard}: its Lease {shard.config[0]}/{shard.lease} is not held",
        )
    return Cond("Evaluator", True, "Evaluated", f"events are taken by {shard} (Lease held by {shard.holder})")


def evaluation_condition(
    status: Mapping[str, Any] | None,
    shard: Shard,
    interval_s: float,
    status_interval_s: float,
    now: datetime.datetime,
) -> Cond:
    """The ``Evaluator`` condition of a rule evaluated on a clock (messages carry no ages: they stay stable)."""
    last = last_evaluation(status)
    limit = stale_after(interval_s, status_interval_s)
    if last is not None and (now - last).total_seconds() <= limit:
        return Cond("Evaluator", True, "Evaluated", f"evaluated by {shard}")
    seen = f"; last evaluation at {_stamp(last)}" if last is not None else ""
    if shard.holder is None:
        return Cond(
            "Evaluator",
            False,
            "EvaluatorNotReady",
            f"no evaluator runs {shard}: its Lease {shard.config[0]}/{shard.lease} is not held{seen}",
        )
    if last is None:
        return Cond(
            "Evaluator",
            False,
            "AwaitingEvaluation",
            f"{shard} runs (Lease held by {shard.holder}) but has not evaluated the rule yet",
        )
    return Cond(
        "Evaluator",
        False,
        "EvaluationStale",
        f"{shard} holds its Lease ({shard.holder}) but the rule's last evaluation at {_stamp(last)} is older "
        f"than {format_duration(limit)} (evaluation interval {format_duration(interval_s)}, status heartbeat "
        f"{format_duration(status_interval_s)})",
    )


async def lease_holder(rt: Runtime, namespace: str, name: str) -> str | None:
    """Who holds the Lease now (None: nobody, or expired), read at most once per ``lease_ttl_seconds``."""
    key = (namespace, name)
    cached = rt.lease_cache.get(key)
    clock = time.monotonic()
    if cached is not None and clock - cached[0] < rt.options.lease_ttl_seconds:
        return cached[1]
    try:
        lease = await rt.kube.get(Ref("coordination.k8s.io/v1", "leases", namespace, name))
    except KubeError:
        return cached[1] if cached is not None else None  # unknown: keep what we knew
    now = datetime.datetime.now(tz=datetime.UTC)
    holder = None
    if lease is not None and not lease_expired(lease, now):
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "") or None
    rt.lease_cache[key] = (clock, holder)
    return holder


@dataclass(frozen=True)
class Expectation:
    """What an evaluator-run rule expects of its evaluator, as its last reconcile derived it."""

    config: tuple[str, str]
    shards: int
    interval_s: float
    status_interval_s: float
    events: bool = False  # an event rule: shard 0's leader takes its events

    @classmethod
    def of(cls, config_key: tuple[str, str], config: AlertConfigSpec, spec: AlertRuleSpec) -> Expectation:
        return cls(
            config_key,
            config.evaluator.shards,
            parse_duration(effective_interval(spec, config)),
            parse_duration(config.evaluator.status_interval),
            events=spec.events is not None,
        )


async def rule_evaluation(
    rt: Runtime, body: Mapping[str, Any], expect: Expectation, now: datetime.datetime | None = None
) -> Cond:
    """The ``Evaluator`` condition of an evaluator-run rule, looking up its shard's Lease when needed."""
    meta = body["metadata"]
    if expect.events:
        taker = await lease_holder(rt, expect.config[0], deployment_name(expect.config[1], 0))
        return event_condition(Shard(expect.config, 0, expect.shards, taker))
    index = shard_of(str(meta.get("uid") or f"{meta['namespace']}/{meta['name']}"), expect.shards)
    now = now or datetime.datetime.now(tz=datetime.UTC)
    status = body.get("status")
    last = last_evaluation(status)
    holder: str | None = None
    if last is None or (now - last).total_seconds() > stale_after(expect.interval_s, expect.status_interval_s):
        holder = await lease_holder(rt, expect.config[0], deployment_name(expect.config[1], index))
    shard = Shard(expect.config, index, expect.shards, holder)
    return evaluation_condition(status, shard, expect.interval_s, expect.status_interval_s, now)
