"""Leader election on a coordination.k8s.io/v1 Lease, so several operator replicas are safe.

Why not kopf's peering: it needs the KopfPeering CRD and pauses replicas of equal priority
instead of electing one. A Lease needs only built-in RBAC and behaves like client-go's elector:
the holder renews every ``renew`` seconds; others take over once ``duration`` has passed without
a renewal. Only the leader runs the handlers; a leader that cannot renew stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from .client import Body, KubeClient, KubeError, Ref

logger = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _fmt(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def pod_identity() -> str:
    """Who holds a Lease: the pod's name (``KLAXON_POD_NAME``, else ``POD_NAME``), else host and a random suffix."""
    return (
        os.environ.get("KLAXON_POD_NAME")
        or os.environ.get("POD_NAME")
        or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    )


def lease_expired(lease: Body, now: datetime.datetime) -> bool:
    spec = lease.get("spec") or {}
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    if not spec.get("holderIdentity") or renewed is None:
        return True
    return now > renewed + datetime.timedelta(seconds=float(spec.get("leaseDurationSeconds") or 0))


@dataclass
class LeaderElector:
    kube: KubeClient
    namespace: str
    name: str
    identity: str
    duration: float = 15.0  # leaseDurationSeconds: how long a Lease is valid without renewal
    renew: float = 2.0  # how often the leader renews
    retry: float = 2.0  # how often candidates try to acquire
    deadline: float = 10.0  # how long the leader keeps failing to renew before it gives up
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    #: put on the Lease when this elector creates it, so it is garbage-collected with its owner
    owner_references: list[dict[str, object]] = field(default_factory=list)
    #: written on the Lease while this elector holds it (e.g. where the leader can be reached)
    annotations: dict[str, str] = field(default_factory=dict)
    #: the Lease as last read: lets candidates see the holder's annotations
    observed: Body | None = None

    @property
    def ref(self) -> Ref:
        return Ref("coordination.k8s.io/v1", "leases", self.namespace, self.name)

    def _spec(self, transitions: int, acquired: str | None = None) -> dict[str, object]:
        now = _fmt(_now())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        """One attempt: create, renew our own, or take over an expired Lease (optimistic locking)."""
        lease = self.observed = await self.kube.get(self.ref)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    **({"ownerReferences": self.owner_references} if self.owner_references else {}),
                    **({"annotations": dict(self.annotations)} if self.annotations else {}),
                },
                "spec": self._spec(0),
            }
            try:
                await self.kube.create(body)
                return True
            except KubeError as exc:
                if exc.status == 409:
                    return False
                raise
        spec = lease.get("spec") or {}
        ours = spec.get("holderIdentity") == self.identity
        if not ours and not lease_expired(lease, _now()):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        meta: dict[str, object] = {"resourceVersion": lease["metadata"]["resourceVersion"]}
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        patch = {"metadata": meta, "spec": self._spec(transitions, spec.get("acquireTime") if ours else None)}
        try:
            await self.kube.merge_patch(self.ref, patch)
        except KubeError as exc:
            if exc.status == 409:  # someone else renewed or took it first
                return False
            raise
        return True

    def holder_annotation(self, key: str) -> str | None:
        """An annotation of the Lease as last read, while someone holds it."""
        lease = self.observed or {}
        if not (lease.get("spec") or {}).get("holderIdentity"):
            return None
        value = ((lease.get("metadata") or {}).get("annotations") or {}).get(key)
        return str(value) if value else None

    async def acquire(self) -> None:
        while not await self._attempt():
            await asyncio.sleep(self.retry)
        logger.info("Became the leader (Lease %s/%s) as %s.", self.namespace, self.name, self.identity)
        self.leading.set()

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire()
        except KubeError as exc:
            logger.warning("Leader election attempt failed: %s", exc)
            return False

    async def keep(self) -> None:
        """Renew until renewals have failed for ``deadline`` seconds (or another took over); then ``lost``.

        Each attempt ends by the deadline, however long the client would retry: a leader cut off
        from the API server must stop before the Lease can expire and another replica take over.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline
        while True:
            await asyncio.sleep(min(self.renew, max(0.0, deadline - loop.time())))
            if await _by(deadline, self._attempt()):
                deadline = loop.time() + self.deadline
            elif loop.time() >= deadline or await _by(deadline, self._taken()):
                logger.error("Lost the leadership (Lease %s/%s).", self.namespace, self.name)
                self.leading.clear()
                self.lost.set()
                return

    async def _taken(self) -> bool:
        try:
            lease = await self.kube.get(self.ref)
        except KubeError:
            return False
        return lease is not None and (lease.get("spec") or {}).get("holderIdentity") != self.identity

    async def release(self) -> None:
        """Give the Lease up on a clean exit so a standby takes over at once."""
        if not self.leading.is_set():
            return
        try:  # bounded: an unreachable API server must not hold up the exit
            await asyncio.wait_for(self._release(), self.deadline)
        except (KubeError, TimeoutError) as exc:
            logger.warning("Could not release the Lease: %s", str(exc) or "the API server did not answer in time")
        self.leading.clear()

    async def _release(self) -> None:
        lease = await self.kube.get(self.ref)
        if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            await self.kube.merge_patch(
                self.ref,
                {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": {"holderIdentity": None, "renewTime": None},
                },
            )


async def _by(deadline: float, attempt: Coroutine[Any, Any, bool]) -> bool:
    """``attempt``'s answer, or False when it has not answered by ``deadline`` (loop time)."""
    try:
        return await asyncio.wait_for(attempt, max(0.0, deadline - asyncio.get_running_loop().time()))
    except TimeoutError:
        return False


class Leadership:
    """A process' hold on its Lease, the same for the operator and the evaluator.

    ``acquire`` waits as a standby until the Lease is ours (False when ``stop`` is set first);
    from then on it is renewed in the background and ``stop`` is set once it is lost, so the
    process winds down (its exit code says so: ``lost``). ``release`` hands it over on exit.
    Without an elector (no election) the process leads at once.
    """

    def __init__(self, elector: LeaderElector | None, stop: asyncio.Event) -> None:
        self.elector = elector
        self.stop = stop
        self._keeper: asyncio.Task[None] | None = None
        self._crashed = False

    async def acquire(self) -> bool:
        if self.elector is None:
            return True
        acquire = asyncio.create_task(self.elector.acquire())
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (acquire, stopped):
                t.cancel()
            await asyncio.gather(acquire, stopped, return_exceptions=True)
        if acquire.done() and not acquire.cancelled() and acquire.exception() is not None:
            raise acquire.exception()  # type: ignore[misc]
        if not self.elector.leading.is_set():
            return False
        self._keeper = asyncio.create_task(self.elector.keep(), name="klaxon-lease-keeper")
        self._keeper.add_done_callback(self._kept)
        return True

    def _kept(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._crashed = True
            logger.error("Renewing the Lease failed; stopping.", exc_info=task.exception())
        self.stop.set()

    @property
    def lost(self) -> bool:
        """The Lease was lost (or could not be renewed) while this process led."""
        return self._crashed or (self.elector is not None and self.elector.lost.is_set())

    async def release(self) -> None:
        if self._keeper is not None and not self._keeper.done():  # a crashed keeper is logged already
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self.elector is not None:
            await self.elector.release()
