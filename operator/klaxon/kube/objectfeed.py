"""One named object followed by watch (the evaluator's own AlertConfig).

A list narrowed by ``fieldSelector=metadata.name=NAME`` (a Role's ``resourceNames`` allows it),
then a watch from that list's resourceVersion. ``latest`` is the object as last seen (None while
it does not exist) and ``version`` counts the changes, so a consumer polls cheaply once per cycle
and ``changed`` wakes one that waits. A watch that ends resumes; one that fails lists again with
backoff (up to 5 s, as the rule feed) and keeps the last object meanwhile: an outage never looks
like a deletion.
"""

from __future__ import annotations

import asyncio
import logging

from .client import FAILURES, Body, KubeClient, Ref

log = logging.getLogger(__name__)

#: Short: the object is listed again this soon after the API server returns from an outage.
MAX_BACKOFF_S = 5.0


class ObjectFeed:
    def __init__(self, kube: KubeClient, ref: Ref, backoff: float = 1.0) -> None:
        if not ref.name:
            raise ValueError("ObjectFeed follows one named object: ref.name is required")
        self.kube = kube
        self.collection = Ref(ref.api_version, ref.plural, ref.namespace)
        self.name = ref.name
        self.backoff = backoff
        self.latest: Body | None = None
        #: how many times ``latest`` changed (lists and watch events that brought a new resourceVersion)
        self.version = 0
        self.changed = asyncio.Event()
        self.lists = 0
        self._rv = ""

    @property
    def _selector(self) -> str:
        return f"metadata.name={self.name}"

    def _see(self, obj: Body | None) -> None:
        if obj is None and self.latest is None:
            return
        if obj is not None and self.latest is not None and _rv(obj) == _rv(self.latest):
            return
        self.latest = obj
        self.version += 1
        self.changed.set()

    async def list(self) -> Body | None:
        """List (the object or None) and remember where the watch starts; FAILURES propagate."""
        items, self._rv = await self.kube.list_with_version(self.collection, field_selector=self._selector)
        self.lists += 1
        found = next((o for o in items if (o.get("metadata") or {}).get("name") == self.name), None)
        self._see(found)
        return found

    async def run(self) -> None:
        """Follow the object until cancelled."""
        delay, listed = self.backoff, bool(self._rv)
        while True:
            try:
                if not listed:
                    await self.list()
                    listed = True
                delay = self.backoff
                async for kind, obj in self.kube.watch(self.collection, self._rv, field_selector=self._selector):
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self._rv = str(rv)
                    if (obj.get("metadata") or {}).get("name") != self.name:
                        continue  # BOOKMARK (or a server that ignored the selector)
                    if kind in ("ADDED", "MODIFIED"):
                        self._see(obj)
                    elif kind == "DELETED":
                        self._see(None)
            except FAILURES as e:
                log.warning(
                    "watch of %s %s/%s failed (%s); listing again in %.0fs",
                    self.collection.plural, self.collection.namespace, self.name,
                    str(e)[:300] or type(e).__name__, delay,
                )
                listed = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)


def _rv(obj: Body) -> str | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv is not None else None
