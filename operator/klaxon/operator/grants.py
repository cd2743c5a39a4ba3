"""The evaluator's permissions outside its AlertConfig's namespace (``spec.allowedNamespaces``).

An AlertConfig that admits rules of other namespaces needs its evaluator to read those rules,
write their status, read the channels and channel Secrets there and post Events there. For each
such namespace the operator creates a Role (``EVALUATOR_RULES``, Secrets narrowed by
``resourceNames``) and a RoleBinding to the evaluator's ServiceAccount; with ``'*'`` it adds one
ClusterRole + ClusterRoleBinding that only lets the evaluator list and watch AlertRules
cluster-wide, and the per-namespace Roles follow the namespaces its rules are in.

Owner references cannot point across namespaces or from cluster-scoped objects to a namespaced
owner, so these objects carry the config's uid as the ``klaxon.dev/owner-uid`` label and are
garbage-collected by label: on every reconcile that changes the set, when the AlertConfig is
deleted, and by the operator's resync (for deletions it missed while down). No finalizer: an
uninstalled operator never blocks deleting an AlertConfig.

Pure builders first; the apply part at the end.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..kube.apply import OWNER_UID_LABEL, NotOwnedError, ensure_object, labelled_owner
from ..kube.client import Body, KubeClient, KubeError, Ref
from ..kube.rbac import EVALUATOR_CLUSTER_RULES, EVALUATOR_RULES
from .build import CONFIG_LABEL, evaluator_labels, evaluator_name, short_name

logger = logging.getLogger("klaxon.operator.grants")

RBAC = "rbac.authorization.k8s.io/v1"
NAMESPACE_LABEL = "klaxon.dev/alertconfig-namespace"
GRANT_KINDS = (
    ("Role", "roles", True),
    ("RoleBinding", "rolebindings", True),
    ("ClusterRole", "clusterroles", False),
    ("ClusterRoleBinding", "clusterrolebindings", False),
)


def grant_name(config_ns: str, config_name: str) -> str:
    """``klaxon-eval.<ns>.<name>``: namespaces hold no dots, so two configs never share a name."""
    name = f"klaxon-eval.{config_ns}.{config_name}"
    if len(name) <= 253:
        return name
    return f"{name[:244]}.{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def grant_labels(config_ns: str, config_name: str, uid: str) -> dict[str, str]:
    labels = evaluator_labels(config_name)
    labels[NAMESPACE_LABEL] = config_ns
    labels[CONFIG_LABEL] = short_name(config_name)
    labels[OWNER_UID_LABEL] = uid
    return labels


def grant_namespaces(config_ns: str, spec: AlertConfigSpec, rule_namespaces: Iterable[str]) -> list[str]:
    """Namespaces other than the config's own where the evaluator needs a Role.

    A listed namespace gets one whether or not it holds rules yet (the evaluator watches it);
    with ``'*'``, the namespaces that hold rules referring to the config.
    """
    if not spec.evaluator.enabled:
        return []
    allowed = set(spec.allowed_namespaces)
    wanted = set(rule_namespaces) if "*" in allowed else allowed
    return sorted(wanted - {config_ns, "*"})


def cluster_wide(spec: AlertConfigSpec) -> bool:
    return spec.evaluator.enabled and "*" in spec.allowed_namespaces


def _subject(config_ns: str, config_name: str) -> Body:
    return {"kind": "ServiceAccount", "name": evaluator_name(config_name), "namespace": config_ns}


def build_grants(
    config_ns: str,
    config_name: str,
    uid: str,
    spec: AlertConfigSpec,
    namespaces: Iterable[str],
    secrets: Mapping[str, Iterable[str]],
) -> list[Body]:
    """Roles + RoleBindings in ``namespaces`` (``secrets``: Secret names the evaluator may read
    there), and the ClusterRole + ClusterRoleBinding when the config admits every namespace."""
    name = grant_name(config_ns, config_name)
    labels = grant_labels(config_ns, config_name, uid)
    subject: Body = _subject(config_ns, config_name)
    out: list[Body] = []
    for ns in namespaces:
        names = sorted(set(secrets.get(ns, ())))
        rules: list[Body] = []
        for rule in copy.deepcopy(EVALUATOR_RULES):
            if rule["apiGroups"] == ["coordination.k8s.io"]:
                continue  # its Lease lives in the config's namespace
            if rule["resources"] == ["secrets"]:
                if not names:  # an empty resourceNames would grant every Secret
                    continue
                rule = {**rule, "resourceNames": names}
            rules.append(rule)
        out += _role_and_binding("Role", {"name": name, "namespace": ns, "labels": labels}, rules, subject)
    if cluster_wide(spec):
        meta = {"name": name, "labels": labels}
        out += _role_and_binding("ClusterRole", meta, copy.deepcopy(EVALUATOR_CLUSTER_RULES), subject)
    return out


def _role_and_binding(kind: str, meta: Mapping[str, Any], rules: list[Body], subject: Body) -> list[Body]:
    return [
        {"apiVersion": RBAC, "kind": kind, "metadata": copy.deepcopy(dict(meta)), "rules": rules},
        {
            "apiVersion": RBAC,
            "kind": f"{kind}Binding",
            "metadata": copy.deepcopy(dict(meta)),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": meta["name"]},
            "subjects": [subject],
        },
    ]


# --------------------------------------------------------------------------------- apply
@dataclass
class GrantResult:
    drift: list[str] = field(default_factory=list)
    #: Namespaces that do not exist (yet): their Role is created when they appear.
    missing_namespaces: list[str] = field(default_factory=list)


def _where(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta['namespace'] + '/' if meta.get('namespace') else ''}{meta['name']}"


async def apply_grants(kube: KubeClient, grants: list[Body]) -> GrantResult:
    """Create or correct every grant. A namespace that does not exist is noted, not an error.

    Raises KubeError / NotOwnedError for anything else (with a hint for a 403 on cluster RBAC).
    """
    result = GrantResult()
    for obj in grants:
        ns = obj["metadata"].get("namespace")
        if ns in result.missing_namespaces:
            continue
        try:
            applied = await ensure_object(kube, obj, None)
        except KubeError as exc:
            if exc.status == 404 and ns and not exc.resource_missing:
                result.missing_namespaces.append(ns)
                continue
            if exc.status == 403 and obj["kind"].startswith("Cluster"):
                raise KubeError(
                    exc.status,
                    exc.reason,
                    f"{exc.message} (allowedNamespaces '*' needs the operator's cluster-wide install: "
                    "it must hold ClusterRole/ClusterRoleBinding permissions)",
                ) from None
            raise
        if applied.drift:
            result.drift.append(_where(obj))
    return result


async def delete_grants(
    kube: KubeClient, config_ns: str, config_name: str, uid: str, namespaces: Iterable[str], cluster: bool
) -> list[str]:
    """Delete the config's Role + RoleBinding in ``namespaces`` (and its cluster grant when
    ``cluster``): by name, and only objects labelled with ``uid``. Returns what it deleted."""
    name = grant_name(config_ns, config_name)
    targets: list[tuple[str, str, str | None]] = [
        (kind, plural, ns) for ns in namespaces for kind, plural, namespaced in GRANT_KINDS if namespaced
    ]
    if cluster:
        targets += [(kind, plural, None) for kind, plural, namespaced in GRANT_KINDS if not namespaced]
    deleted: list[str] = []
    for kind, plural, ns in targets:
        ref = Ref(RBAC, plural, ns, name)
        live = await kube.get(ref)
        if live is None or labelled_owner(live) != uid:
            continue
        await kube.delete(ref, uid=(live.get("metadata") or {}).get("uid"))
        deleted.append(_where({"kind": kind, "metadata": {"namespace": ns, "name": name}}))
    if deleted:
        logger.info("AlertConfig %s/%s: deleted evaluator grants %s", config_ns, config_name, ", ".join(deleted))
    return deleted


async def collect_orphans(kube: KubeClient, live_uids: set[str]) -> list[str]:
    """Grants whose AlertConfig is gone (deleted while the operator was not running)."""
    deleted: list[str] = []
    for kind, plural, _ in GRANT_KINDS:
        selector = f"{OWNER_UID_LABEL},{NAMESPACE_LABEL}"
        try:
            found = await kube.list(Ref(RBAC, plural, None), label_selector=selector)
        except KubeError as exc:
            if exc.status != 403:
                raise
            logger.debug("cannot list %s cluster-wide (namespaced install): orphan check skipped", plural)
            continue
        for live in found:
            meta = live.get("metadata") or {}
            uid = labelled_owner(live)
            if not uid or uid in live_uids:
                continue
            await kube.delete(Ref(RBAC, plural, meta.get("namespace"), meta["name"]), uid=meta.get("uid"))
            deleted.append(_where({"kind": kind, "metadata": meta}))
    if deleted:
        logger.info("deleted grants of AlertConfigs that no longer exist: %s", ", ".join(deleted))
    return deleted


__all__ = [
    "GrantResult",
    "NotOwnedError",
    "apply_grants",
    "build_grants",
    "cluster_wide",
    "collect_orphans",
    "delete_grants",
    "grant_namespaces",
]
