"""The AlertRules of one AlertConfig as a feed: one list per namespace, then a watch each.

An evaluator's Roles are per namespace, so it never lists or watches cluster-wide: ``scope`` is
the namespaces to follow (``klaxon.api.refs.rules_scope``) and may change while it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..api.refs import config_key
from .client import FAILURES, Body, KubeClient, KubeError, Ref, unexpected

log = logging.getLogger(__name__)

#: Short: a namespace is listed again this soon after the API server returns from an outage.
MAX_BACKOFF_S = 5.0


class RuleFeed:
    """The AlertConfig's rules: one list at start, then a watch per namespace of ``scope``; events
    queue up for the consumer (``drain``).

    A watch that ends is resumed from the last resourceVersion; one that fails (410 Gone, a
    connection error, 403 while its Role is not there yet) lists that namespace again — with
    backoff up to 5 s — and queues the whole picture as one ``SYNC`` event. A namespace that cannot
    be listed keeps the rules last seen there: a transient error never looks like deleted rules.
    Anything else a follower raises is a bug: ``run`` raises it, nothing is swallowed.
    """

    def __init__(self, kube: KubeClient, namespace: str, name: str, scope: list[str], backoff: float = 1.0) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        #: The namespaces to list and watch (one watch each).
        self.scope = sorted(set(scope))
        self.backoff = backoff
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.resource_versions: dict[str, str] = {}
        #: per namespace the rules last seen there, by uid
        self.items: dict[str, dict[str, dict[str, Any]]] = {}
        self.failing: set[str] = set()
        self.lists = 0
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._crash: asyncio.Future[None] | None = None

    def snapshot(self) -> list[dict[str, Any]]:
        return [obj for ns in self.scope for obj in self.items.get(ns, {}).values()]

    async def _list(self, namespace: str) -> bool:
        try:
            found, rv = await self.kube.list_with_version(Ref.klaxon("AlertRule", namespace))
        except FAILURES as e:
            log.warning("listing AlertRules in %s failed: %s", namespace, _why(e), exc_info=unexpected(e))
            self.failing.add(namespace)
            return False
        self.items[namespace] = {_uid(o): o for o in found if self._ours(o)}
        self.resource_versions[namespace] = rv
        self.failing.discard(namespace)
        return True

    async def relist(self) -> list[dict[str, Any]]:
        """List every namespace (one that fails keeps its last rules and is retried by its watch)."""
        for ns in self.scope:
            await self._list(ns)
        self.lists += 1
        return self.snapshot()

    async def run(self) -> None:
        """Follow every namespace of the scope (``rescope`` changes it while running) until
        cancelled; a follower that crashes ends it with that error."""
        self._crash = asyncio.get_running_loop().create_future()
        try:
            for ns in self.scope:
                self._start(ns)
            await self._crash
        finally:
            self._crash = None
            tasks = list(self._followers.values())
            self._followers.clear()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, namespace: str) -> None:
        task = asyncio.create_task(self._follow(namespace), name=f"klaxon-rules-{namespace}")
        task.add_done_callback(self._ended)
        self._followers[namespace] = task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        if self._crash is not None and not self._crash.done():
            self._crash.set_exception(task.exception())  # type: ignore[arg-type]

    def rescope(self, scope: list[str]) -> None:
        """Follow ``scope`` from now on: new namespaces are listed and watched; rules of the ones
        left are dropped (one ``SYNC``)."""
        if set(scope) == set(self.scope):
            return
        old, self.scope = set(self.scope), sorted(set(scope))
        for ns in set(scope) - old:
            log.info("following AlertRules in namespace %s", ns)
            if self._crash is not None:
                self._start(ns)
        left = old - set(scope)
        for ns in left:
            log.info("no longer following AlertRules in namespace %s", ns)
            task = self._followers.pop(ns, None)
            if task is not None:
                task.cancel()
            self.items.pop(ns, None)
            self.resource_versions.pop(ns, None)
            self.failing.discard(ns)
        if left:
            self.events.put_nowait(("SYNC", self.snapshot()))

    def _track(self, namespace: str, kind: str, obj: dict[str, Any]) -> None:
        seen = self.items.setdefault(namespace, {})
        if kind in ("ADDED", "MODIFIED"):
            seen[_uid(obj)] = obj
        else:  # DELETED, MOVED
            seen.pop(_uid(obj), None)

    async def _follow(self, namespace: str) -> None:
        delay = self.backoff
        while True:
            if namespace in self.failing or namespace not in self.resource_versions:
                if not await self._list(namespace):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    continue
                self.events.put_nowait(("SYNC", self.snapshot()))
            delay = self.backoff
            try:
                async for kind, obj in self._watch(namespace):
                    self._track(namespace, kind, obj)
                    self.events.put_nowait((kind, obj))
            except FAILURES as e:
                log.warning(
                    "watch of AlertRules in %s failed (%s); listing again", namespace, _why(e), exc_info=unexpected(e)
                )
                self.failing.add(namespace)
                await asyncio.sleep(delay)

    def _ours(self, rule: Mapping[str, Any]) -> bool:
        meta = rule.get("metadata") or {}
        return config_key(str(meta.get("namespace", "")), rule.get("spec")) == (self.namespace, self.name)

    async def _watch(self, namespace: str) -> AsyncIterator[tuple[str, Body]]:
        """ADDED, MODIFIED, DELETED (the object is gone) and MOVED (it now refers to another
        AlertConfig: forget it, without resolving its alerts, the other evaluator takes it over)
        for rules of the AlertConfig in ``namespace``, from the last resourceVersion seen on."""
        ref = Ref.klaxon("AlertRule", namespace)
        async for kind, obj in self.kube.watch(ref, self.resource_versions.get(namespace, "")):
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_versions[namespace] = str(rv)
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # BOOKMARK: only its resourceVersion counts
            if kind != "DELETED" and not self._ours(obj):
                kind = "MOVED"
            yield kind, obj

    def drain(self) -> list[tuple[str, Any]]:
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out


def _why(e: BaseException) -> str:
    if isinstance(e, KubeError):  # the server's answer, or why there was none
        return str(e)[:300]
    code = getattr(e, "status", None)
    return f"{type(e).__name__} {code}" if code else type(e).__name__


def _uid(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
