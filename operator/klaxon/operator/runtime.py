"""Per-run state of the operator (lives in kopf's memo): client, locks, caches, the index views."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..kube.client import Body, Configuration, KubeClient, KubeError
from .conditions import Cond
from .refs import Key, SingleView

logger = logging.getLogger("klaxon.operator")

INDEX_NAMES = (
    "klaxon_rules",
    "klaxon_rules_by_config",
    "klaxon_rules_by_channel",
    "klaxon_configs",
    "klaxon_channels",
    "klaxon_channels_by_secret",
    "klaxon_secret_keys",
)


@dataclass
class Options:
    """What `klaxon operator` (or a test) decides; everything else is derived."""

    image: str = "ghcr.io/klaxon-dev/klaxon:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    kube_configuration: Configuration | None = None
    kubeconfig: str | None = None
    context: str | None = None
    resync_seconds: float = 600.0
    #: The namespaces the operator watches (empty: the whole cluster). With a list, its RBAC is
    #: per namespace (the chart's watchNamespaces), so it never asks the cluster-wide API.
    namespaces: tuple[str, ...] = ()
    debounce_seconds: float = 0.2
    retry_seconds: float = 30.0
    #: How often evaluator-run rules are checked for a stale lastEvaluation or a shard without a leader.
    evaluation_check_seconds: float = 15.0
    #: How long a shard Lease lookup is reused: one GET per shard per this long, whatever the rule count.
    lease_ttl_seconds: float = 10.0


ObjKey = tuple[str, str, str]  # (kind, namespace, name)
#: See Runtime.api_retry_delay.
UNREACHABLE_RETRY_CAP_S = 5.0


@dataclass
class Runtime:
    options: Options
    kube: KubeClient
    locks: dict[ObjKey, asyncio.Lock] = field(default_factory=dict)
    pending: dict[ObjKey, asyncio.Task[None]] = field(default_factory=dict)
    indices: dict[str, Mapping[Any, Any]] = field(default_factory=dict)
    #: Our own status fields as we last wrote them, by (kind, ns, name, uid): authoritative for
    #: "did anything change" because only the operator writes them.
    written: dict[tuple[str, str, str, str], Body] = field(default_factory=dict)
    #: The config each rule was last counted under (to recount the old one when it moves).
    rule_config: dict[Key, Key] = field(default_factory=dict)
    #: The last desired PrometheusRule per (ns, name), prepared: lets the drift watch ignore our own writes.
    desired_cache: dict[Key, Body] = field(default_factory=dict)
    #: Per AlertConfig (ns, name, uid): its shard Deployments and Synced, as last applied.
    config_children: dict[tuple[str, str, str], tuple[dict[int, Body], Cond]] = field(default_factory=dict)
    #: Per AlertConfig (ns, name, uid): namespaces its evaluator should hold a Role in besides its own
    #: ('*' for the cluster grant) as last reconciled, and what status reports as granted.
    config_grants: dict[tuple[str, str, str], tuple[list[str], list[str]]] = field(default_factory=dict)
    #: (uid, generation) of referenced objects as last seen, to tell spec changes from status writes.
    generations: dict[ObjKey, tuple[Any, Any]] = field(default_factory=dict)
    #: Per evaluator-run rule (ns, name): the Evaluator condition's (ok, reason) as last reconciled,
    #: so the periodic check kicks only rules whose verdict changed.
    evaluations: dict[Key, tuple[bool | None, str, Any]] = field(default_factory=dict)
    #: (namespace, lease name) -> (monotonic time read, holder or None): see evaluation.lease_holder.
    lease_cache: dict[Key, tuple[float, str | None]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def capture(self, kwargs: Mapping[str, Any]) -> None:
        """Keep the live kopf index objects (the same objects on every call) for background work."""
        for name in INDEX_NAMES:
            if name in kwargs:
                self.indices[name] = kwargs[name]

    def view(self, name: str) -> Mapping[Key, Any]:
        return SingleView(self.indices.get(name))

    def many(self, name: str, key: Key) -> list[Any]:
        index = self.indices.get(name) or {}
        return list(index[key]) if key in index else []

    def keys(self, name: str) -> Collection[Key]:
        return list(self.indices.get(name) or {})

    def lock(self, key: ObjKey) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    def kick(
        self, key: ObjKey, factory: Callable[[], Awaitable[object]], delay: float | None = None, failures: int = 0
    ) -> None:
        """Reconcile ``key`` soon, once: kicks that arrive before it starts are coalesced. One
        that fails for want of the API server is kicked again, with backoff."""
        if key in self.pending:
            return
        wait = self.options.debounce_seconds if delay is None else delay

        async def run() -> None:
            try:
                await asyncio.sleep(wait)
            finally:
                self.pending.pop(key, None)
            try:
                await factory()
            except KubeError as exc:
                if not exc.transient:
                    logger.warning("Reconciling %s %s/%s failed: %s", *key, exc)
                    return
                again = self.api_retry_delay(exc, failures)
                logger.warning("Reconciling %s %s/%s failed: %s; again in %.1f s.", *key, exc, again)
                self.kick(key, factory, delay=again, failures=failures + 1)
            except Exception:
                logger.exception("Reconciling %s %s/%s failed.", *key)

        task = asyncio.get_running_loop().create_task(run(), name=f"klaxon-kick-{'/'.join(key)}")
        self.pending[key] = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def api_retry_delay(self, exc: KubeError, retry: int) -> float:
        """How long to wait before reconciling again after ``exc`` (the ``retry``-th time in a row).

        Doubling from 1 s; capped at 5 s while the API server cannot be reached at all (kopf
        wakes a delayed handler for nothing, not even an edit, so the cap is how late an edit
        made right after the server's return may start), else at ``retry_seconds``.
        """
        cap = UNREACHABLE_RETRY_CAP_S if exc.unreachable else self.options.retry_seconds
        return float(min(cap, self.options.retry_seconds, 2.0**retry))

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        async def wrap() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(wrap(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.kube.close()
