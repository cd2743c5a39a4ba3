"""Per-run state of the operator (lives in kopf's memo): client, locks, caches, the index views."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
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

INDEX_OF_KIND = {"AlertRule": "klaxon_rules", "AlertConfig": "klaxon_configs", "NotificationChannel": "klaxon_channels"}


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
    #: Kicked reconciles running at once (a burst of 10,000 new rules is worked off this many at a
    #: time, so their transient objects never all live together; the API client has 100 connections).
    max_reconciles: int = 64


ObjKey = tuple[str, str, str]  # (kind, namespace, name)
#: How long a gated kick (Runtime.kick) waits for its gate at most.
GATE_WAIT_S = 10.0
#: See Runtime.api_retry_delay.
UNREACHABLE_RETRY_CAP_S = 5.0


@dataclass
class Runtime:
    options: Options
    kube: KubeClient
    #: One lock per object being reconciled, with how many hold or await it (dropped at zero:
    #: 10,000 idle rules keep none).
    locks: dict[ObjKey, tuple[asyncio.Lock, list[int]]] = field(default_factory=dict)
    pending: dict[ObjKey, tuple[asyncio.Task[None], float]] = field(default_factory=dict)
    indices: dict[str, Mapping[Any, Any]] = field(default_factory=dict)
    #: Our own status fields as we last wrote them, by (kind, ns, name, uid), with the resourceVersion
    #: the write made: authoritative for "did anything change" because only the operator writes
    #: them, until the watch shows that version (then the body says the same; see forget_written).
    written: dict[tuple[str, str, str, str], tuple[str, Body]] = field(default_factory=dict)
    #: The config each rule was last counted under (to recount the old one when it moves).
    rule_config: dict[Key, Key] = field(default_factory=dict)
    #: resourceVersion of each managed PrometheusRule (ns, name) as last written by us or seen by the
    #: watch ("" while our write is in flight): the drift watch ignores our own writes coming back,
    #: and a new rule whose PrometheusRule is not here is created without a GET first.
    promrules: dict[Key, str] = field(default_factory=dict)
    #: managed_digest of each managed PrometheusRule as the watch (or our write) last showed it: a
    #: reconcile whose desired object has the same digest needs neither a GET nor a write (a resume).
    promrule_digests: dict[Key, str] = field(default_factory=dict)
    #: The rule owning each managed PrometheusRule (to reconcile it when its object went unseen).
    promrule_owners: dict[Key, Key] = field(default_factory=dict)
    #: Set once the PrometheusRules have been listed (resumed rules wait for it: no GET each).
    promrules_listed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set by the CRD watch when the PrometheusRule CRD appears (see promrules.crd_installed).
    promrule_crd: asyncio.Event = field(default_factory=asyncio.Event)
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
    slots: asyncio.Semaphore | None = None
    trim: asyncio.TimerHandle | None = None

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

    @contextlib.asynccontextmanager
    async def lock(self, key: ObjKey) -> AsyncIterator[None]:
        lock, users = self.locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self.locks[key]

    def remember_written(self, kind: str, meta: Mapping[str, Any], version: str, status: Body) -> None:
        key = (str(meta["namespace"]), str(meta["name"]))
        wkey = (kind, key[0], key[1], str(meta.get("uid", "")))
        current = self.view(INDEX_OF_KIND.get(kind, "")).get(key) or {}
        if (current.get("metadata") or {}).get("resourceVersion") == version:
            # The watch was faster than the response: the body shows this write already, and an
            # older write still remembered would hide it (a Ready that went False and back).
            self.written.pop(wkey, None)
            return
        self.written[wkey] = (version, status)

    def forget_written(self, kind: str, key: Key, meta: Mapping[str, Any], deleted: bool = False) -> None:
        """The watch caught up with our last status write (or the object went): the body is the truth again."""
        wkey = (kind, key[0], key[1], str(meta.get("uid", "")))
        entry = self.written.get(wkey)
        if entry is not None and (deleted or entry[0] == str(meta.get("resourceVersion") or "")):
            del self.written[wkey]

    def kick(
        self,
        key: ObjKey,
        factory: Callable[[], Awaitable[object]],
        delay: float | None = None,
        failures: int = 0,
        gate: asyncio.Event | None = None,
    ) -> None:
        """Reconcile ``key`` soon, once: kicks that arrive before it starts are coalesced (the
        earliest start wins: an object's own change is not held back by a dependent's debounce).
        One that fails for want of the API server is kicked again, with backoff. With a ``gate``,
        it starts once that is set (at most ``GATE_WAIT_S`` later), and holds no slot meanwhile."""
        loop = asyncio.get_running_loop()
        wait = self.options.debounce_seconds if delay is None else delay
        due = loop.time() + wait
        pending = self.pending.get(key)
        if pending is not None:
            if pending[1] <= due:
                return
            pending[0].cancel()  # still asleep: nothing started

        async def run() -> None:
            await asyncio.sleep(wait)
            if gate is not None and not gate.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gate.wait(), GATE_WAIT_S)
            if self.slots is None:
                self.slots = asyncio.Semaphore(self.options.max_reconciles)
            async with self.slots:
                if self.pending.get(key, (None, 0.0))[0] is task:
                    del self.pending[key]
                try:
                    await factory()
                except KubeError as exc:
                    if not exc.transient:
                        logger.warning("Reconciling %s %s/%s failed: %s", *key, exc)
                    else:
                        again = self.api_retry_delay(exc, failures)
                        logger.warning("Reconciling %s %s/%s failed: %s; again in %.1f s.", *key, exc, again)
                        self.kick(key, factory, delay=again, failures=failures + 1, gate=gate)
                except Exception:
                    logger.exception("Reconciling %s %s/%s failed.", *key)
            if not self.pending:
                self.trim_soon(loop)

        task = loop.create_task(run(), name=f"klaxon-kick-{'/'.join(key)}")
        self.pending[key] = (task, due)
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

    def trim_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """A burst of reconciles is over: give the heap it freed back to the system (glibc keeps
        it otherwise; a burst of 10,000 rules would stay in RSS)."""
        if self.trim is None:
            self.trim = loop.call_later(2.0, self._trim)

    def _trim(self) -> None:
        self.trim = None
        if self.pending:
            return  # the next burst started: trim after it
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)  # glibc only; elsewhere nothing to do

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        async def wrap() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(wrap(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        if self.trim is not None:
            self.trim.cancel()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.kube.close()
