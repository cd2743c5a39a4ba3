"""Idempotent apply of generated objects, gated on an input hash; drift is detected, not assumed.

``ensure_object`` writes only when the live object lacks what we want (a newer input hash, or
any of our fields changed by someone else) and says which of the two it was.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.constants import HASH_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL
from .client import Body, KubeClient, KubeError, Ref

# Objects labelled OWNER_UID_LABEL (no owner reference possible: another namespace, cluster scope)
# are deleted by label, not by the garbage collector.
_MISSING: Any = object()


class Outcome(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    body: Body
    #: Why we wrote although the inputs did not change: "modified" (our fields were edited by
    #: someone else) or None. Deletion by hand is for the caller to tell (it knows it existed).
    drift: str | None = None

    @property
    def wrote(self) -> bool:
        return self.outcome is not Outcome.UNCHANGED


class NotOwnedError(Exception):
    """The object exists but belongs to someone else: we never take it over."""


def input_hash(desired: Mapping[str, Any]) -> str:
    """A short stable hash of everything we would write (the hash annotation itself excluded)."""
    meta = dict(desired.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != HASH_ANNOTATION}
    meta["annotations"] = annotations
    canonical = json.dumps({**desired, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def prepare(desired: Mapping[str, Any], owner: Mapping[str, Any] | None) -> Body:
    """The desired object with the controller reference, our labels and the hash annotation.

    ``owner`` None: the object must carry :data:`OWNER_UID_LABEL` instead (cross-namespace or
    cluster-scoped objects, which an owner reference cannot point from).
    """
    body: Body = json.loads(json.dumps(desired))
    meta = body.setdefault("metadata", {})
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    elif not (meta.get("labels") or {}).get(OWNER_UID_LABEL):
        raise ValueError(f"{body.get('kind')} {meta.get('name')}: no owner and no {OWNER_UID_LABEL} label")
    meta["labels"] = {**MANAGED_BY, **(meta.get("labels") or {})}
    annotations = meta.setdefault("annotations", {})
    if HASH_ANNOTATION not in annotations:  # the compiler stamps its own input hash; keep it
        annotations[HASH_ANNOTATION] = input_hash(body)
    return body


def is_subset(wanted: Any, live: Any) -> bool:
    """Whether ``live`` holds everything in ``wanted``; the server may add defaults around it."""
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and is_subset(v, live[k]) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(is_subset, wanted, live))
    if isinstance(wanted, bool) or isinstance(live, bool):
        return wanted is live
    if isinstance(wanted, (int, float)) and isinstance(live, (int, float)):
        return float(wanted) == float(live)
    return bool(wanted == live)


def controller_uid(body: Mapping[str, Any]) -> str | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def diff_state(desired: Body, live: Body) -> str | None:
    """None when live is up to date; "inputs" when our inputs changed; "modified" on drift."""
    if not is_subset(_managed(desired), _managed(live)):
        want = desired["metadata"]["annotations"][HASH_ANNOTATION]
        have = ((live.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
        return "modified" if want == have else "inputs"
    return None


def managed_digest(body: Mapping[str, Any]) -> str:
    """A hash of the fields we manage, as they are: equal digests of desired and live mean no write."""
    canonical = json.dumps(_managed(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _managed(body: Mapping[str, Any]) -> Body:
    meta = body.get("metadata") or {}
    out: Body = {k: v for k, v in body.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    out["metadata"] = {
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
        "ownerReferences": meta.get("ownerReferences") or [],
    }
    return out


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` (or ``Kind name``) for messages."""
    meta = obj["metadata"]
    return f"{obj.get('kind')} {meta['namespace'] + '/' if meta.get('namespace') else ''}{meta['name']}"


def check_owned(live: Body, desired: Body) -> None:
    if not desired["metadata"].get("ownerReferences"):
        # Label-owned names are derived from the owner's namespace and name, so one labelled by
        # another uid is an earlier incarnation of the same owner (deleted and re-created): ours.
        if not (live["metadata"].get("labels") or {}).get(OWNER_UID_LABEL):
            raise NotOwnedError(f"{describe(live)} exists and was not created by Klaxon; rename or delete it")
        return
    owner = desired["metadata"]["ownerReferences"][0]
    uid = controller_uid(live)
    if uid is not None and uid != owner["uid"]:
        raise NotOwnedError(
            f"{live.get('kind')} {live['metadata'].get('namespace')}/{live['metadata']['name']} "
            f"exists and is controlled by another object; rename or delete it"
        )
    if uid is None and (live["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY[MANAGED_BY_LABEL]:
        raise NotOwnedError(
            f"{live.get('kind')} {live['metadata'].get('namespace')}/{live['metadata']['name']} "
            f"exists and was not created by Klaxon; rename or delete it"
        )


async def ensure_object(
    kube: KubeClient, desired: Mapping[str, Any], owner: Mapping[str, Any] | None, *, live: Body | None = _MISSING
) -> Applied:
    """get → compare → create or merge-patch. ``live`` skips the GET when the caller has it."""
    body = prepare(desired, owner)
    ref = Ref.of(body)
    if live is _MISSING:
        live = await kube.get(ref)
    if live is None:
        try:
            return Applied(Outcome.CREATED, await kube.create(body))
        except KubeError as exc:
            if exc.status != 409:
                raise
            live = await kube.get(ref)  # created meanwhile (another reconcile): compare with it
            if live is None:
                raise
    check_owned(live, body)
    state = diff_state(body, live)
    if state is None:
        return Applied(Outcome.UNCHANGED, live)
    patch = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "status")}
    patch["metadata"] = {k: body["metadata"][k] for k in ("labels", "annotations", "ownerReferences")
                         if k in body["metadata"]}
    patched = await kube.merge_patch(ref, patch)
    return Applied(Outcome.UPDATED, patched, drift="modified" if state == "modified" else None)


async def delete_owned(kube: KubeClient, ref: Ref, owner_uid: str, *, live: Body | None = _MISSING) -> bool:
    """Delete an object only when ``owner_uid`` controls it; True when a deletion was requested."""
    if live is _MISSING:
        live = await kube.get(ref)
    if live is None or controller_uid(live) != owner_uid:
        return False
    await kube.delete(ref, uid=live["metadata"].get("uid"))
    return True


def labelled_owner(body: Mapping[str, Any]) -> str | None:
    return ((body.get("metadata") or {}).get("labels") or {}).get(OWNER_UID_LABEL)
