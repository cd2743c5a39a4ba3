"""The fault suite: `klaxon evaluator` as a process against the emulated Kubernetes API, a real
Prometheus scraping a live exporter, a real HTTP receiver — and each of them failing.

Short time scales come from configuration only: the rules' `evaluation.interval`, the channel's
`spec.retry`, the AlertConfig's status interval, `klaxon evaluator --tick`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio

from kube_harness import EmulatedCluster, write_kubeconfig
from kube_harness.fixtures import kopf_runner, kopf_settings, kube, kube_api
from support.live import METRIC, EvaluatorProcess, Exporter
from support.prometheus import PrometheusServer, prometheus_server
from support.receiver import Hit, Receiver, ReceiverServer

__all__ = ["kopf_runner", "kopf_settings", "kube", "kube_api", "prometheus_server"]

NS = "mon"
AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"
NC = "klaxon.dev/v1alpha1/notificationchannels"
#: Fast but ordinary retries: the old fixed budget (8 attempts) with these delays was ~1.4-1.9 s.
RETRY = {"initialBackoff": "50ms", "maxBackoff": "300ms", "attemptTimeout": "500ms", "maxAge": "1h"}


def old_budget_s(initial: float = 0.05, cap: float = 0.3, attempts: int = 8) -> float:
    """How long the retired fixed budget (8 attempts, no jitter) kept retrying with these delays."""
    return sum(min(cap, initial * 2**i) for i in range(attempts - 1))


def rule_body(name: str, **spec: Any) -> dict[str, Any]:
    """A threshold rule over the exporter's series (one alert per `series` label), every second."""
    body: dict[str, Any] = {
        "configRef": {"name": "main"},
        "severity": "critical",
        "query": {"metric": METRIC, "splitBy": ["series"], "window": "2s", "aggregation": "last"},
        "condition": {"operator": "gt", "threshold": 50},
        "evaluation": {"engine": "evaluator", "interval": "1s"},
        "annotations": {"summary": f"{name} above 50"},
        **spec,
    }
    return {"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertRule", "metadata": {"name": name}, "spec": body}


@dataclass
class Stack:
    """Every part of one fault scenario, started; ``evaluator()`` makes evaluator processes."""

    kube: EmulatedCluster
    exporter: Exporter
    prom: PrometheusServer
    hook: ReceiverServer
    tmp: Path
    kubeconfig: Path
    procs: list[EvaluatorProcess] = field(default_factory=list)

    @property
    def receiver(self) -> Receiver:
        return self.hook.receiver

    def setup(self, rules: list[dict[str, Any]], retry: dict[str, str] | None = RETRY) -> None:
        """The AlertConfig, the channel (``retry`` None: the defaults), the rules."""
        self.kube.create_object("v1/namespaces", {"metadata": {"name": NS}})
        self.kube.create_object(
            AC,
            {
                "apiVersion": "klaxon.dev/v1alpha1",
                "kind": "AlertConfig",
                "metadata": {"name": "main"},
                "spec": {
                    "prometheus": {"url": self.prom.url, "timeout": "1s"},
                    "defaults": {"channels": ["hook"], "interval": "1s"},
                    "evaluator": {"statusInterval": "1s", "maxStatusWritesPerMinute": 6000},
                },
            },
            namespace=NS,
        )
        self.kube.create_object(
            NC,
            {
                "apiVersion": "klaxon.dev/v1alpha1",
                "kind": "NotificationChannel",
                "metadata": {"name": "hook"},
                "spec": {
                    "type": "webhook",
                    "webhook": {"url": f"{self.receiver.url}/hooks/klaxon"},
                    "rateLimit": {"perMinute": 100000},
                    **({"retry": retry} if retry is not None else {}),
                },
            },
            namespace=NS,
        )
        for body in rules:
            self.kube.create_object(AR, body, namespace=NS)

    def evaluator(self, name: str = "evaluator", **kw: Any) -> EvaluatorProcess:
        kw.setdefault("state_dir", self.tmp / "state")
        state_dir = kw.pop("state_dir")
        proc = EvaluatorProcess(self.kubeconfig, state_dir, self.tmp / f"{name}.log", **kw)
        self.procs.append(proc)
        return proc

    def channel_status(self) -> dict[str, Any]:
        return dict((self.kube.get_object(NC, "hook", NS) or {}).get("status") or {})

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.kube.list_objects("v1/events", NS) if e.get("reason") == reason]


@pytest_asyncio.fixture()
async def stack(kube: EmulatedCluster, prometheus_server: Callable[..., PrometheusServer], tmp_path: Path,
                ) -> AsyncIterator[Stack]:
    exporter = Exporter()
    await exporter.start()
    prom = prometheus_server(scrape=[exporter.target], scrape_interval="200ms")
    hook = ReceiverServer()
    await hook.start()
    s = Stack(kube, exporter, prom, hook, tmp_path, write_kubeconfig(kube, tmp_path / "kubeconfig"))
    try:
        yield s
    finally:
        for p in s.procs:
            await p.stop(timeout=10)
        await hook.stop()
        await exporter.stop()


async def until(check: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what() if callable(what) else what}")
        await asyncio.sleep(0.1)


# -- what the receiver got --------------------------------------------------------------------


def notes(rec: Receiver) -> list[tuple[Hit, dict[str, Any]]]:
    """Accepted notifications (not tests) with their bodies, in arrival order."""
    out = []
    for h in rec.accepted:
        body = h.json
        if body.get("kind") != "test":
            out.append((h, body))
    return out


@dataclass
class Ledger:
    """The receiver's view, by Idempotency-Key: what arrived, what repeated, which episodes."""

    deliveries: Counter[str]  # Idempotency-Key → times accepted
    firing: dict[tuple[str, str], set[str]]  # (dedup key, episode) → keys of its firing notifications
    resolved: dict[tuple[str, str], set[str]]
    episodes: dict[str, list[str]]  # dedup key → its firing episodes in the order first notified

    @property
    def repeats(self) -> int:
        """Deliveries of a key the receiver had already accepted."""
        return sum(n - 1 for n in self.deliveries.values())


def ledger(rec: Receiver) -> Ledger:
    deliveries: Counter[str] = Counter()
    firing: dict[tuple[str, str], set[str]] = defaultdict(set)
    resolved: dict[tuple[str, str], set[str]] = defaultdict(set)
    episodes: dict[str, list[str]] = defaultdict(list)
    for hit, body in notes(rec):
        key = hit.headers["Idempotency-Key"]
        assert body["idempotencyKey"] == key
        deliveries[key] += 1
        alert = (body["dedupKey"], body["episodeId"])
        if body["kind"] == "firing":
            firing[alert].add(key)
            if body["episodeId"] not in episodes[body["dedupKey"]]:
                episodes[body["dedupKey"]].append(body["episodeId"])
        elif body["kind"] == "resolved":
            resolved[alert].add(key)
    return Ledger(deliveries, dict(firing), dict(resolved), dict(episodes))


def assert_episode_invariant(rec: Receiver, still_firing: set[str] = frozenset()) -> Ledger:  # type: ignore[assignment]
    """Every notified firing episode was notified under one key, and is resolved — or it is the
    last episode of an alert still firing (``still_firing``: dedup keys). A series never has two
    firing episodes open at once (the earlier one is resolved before the next is notified)."""
    led = ledger(rec)
    problems = []
    for alert, keys in led.firing.items():
        if len(keys) != 1:
            problems.append(f"{alert} notified firing under {len(keys)} keys")
    for dedup, eps in led.episodes.items():
        for i, ep in enumerate(eps):
            last = i == len(eps) - 1
            if (dedup, ep) not in led.resolved and not (last and dedup in still_firing):
                problems.append(f"{dedup} episode {ep} was never resolved ({len(eps)} episode(s))")
    order = [(b["dedupKey"], b["episodeId"], b["kind"]) for _, b in notes(rec) if b["kind"] in ("firing", "resolved")]
    open_: dict[str, str] = {}
    for dedup, ep, kind in order:
        if kind == "firing" and dedup in open_ and open_[dedup] != ep:
            problems.append(f"{dedup}: episode {ep} notified while {open_[dedup]} was not resolved")
        if kind == "firing":
            open_[dedup] = ep
        elif open_.get(dedup) == ep:
            del open_[dedup]
    assert not problems, "\n".join(problems) + "\n" + json.dumps(order, indent=0)[:4000]
    return led
