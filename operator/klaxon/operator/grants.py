"""The evaluator's permissions outside its AlertConfig's namespace (``spec.allowedNamespaces``).

An AlertConfig that admits rules of other namespaces needs its evaluator to read those rules,
write their status, read the channels and channel Secrets there and post Events there. For each
such namespace the operator creates a Role (``EVALUATOR_RULES``, Secrets narrowed by
``resourceNames``) and a RoleBinding to the evaluator's ServiceAccount. With ``'*'`` the Roles
follow the namespaces that hold rules referring to the config, and the evaluator follows the
AlertConfig's ``status.grantedNamespaces``: no evaluator ever gets cluster-scoped access, so the
operator never creates ClusterRoles or ClusterRoleBindings.

Owner references cannot point across namespaces, so these objects carry the config's uid as the
``klaxon.dev/owner-uid`` label and are garbage-collected by label: on every reconcile that
changes the set, when the AlertConfig is deleted, and by the operator's resync (for deletions it
missed while down). No finalizer: an uninstalled operator never blocks deleting an AlertConfig.

Pure builders first; the apply part at the end.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..api.alertconfig import AlertConfigSpec
from ..api.constants import ALERT_CONFIGS, CONFIG_NAMESPACE_LABEL, OWNER_UID_LABEL
from ..kube.apply import describe, ensure_object, labelled_owner
from ..kube.client import Body, KubeClient, KubeError, Ref
from ..kube.rbac import EVALUATOR_RULES
from .build import evaluator_labels, evaluator_name

logger = logging.getLogger("klaxon.operator.grants")

RBAC = "rbac.authorization.k8s.io/v1"
GRANT_KINDS = (("Role", "roles"), ("RoleBinding", "rolebindings"))


def grant_name(config_ns: str, config_name: str) -> str:
    """``klaxon-eval.<ns>.<name>``: namespaces hold no dots, so two configs never share a name."""
    name = f"klaxon-eval.{config_ns}.{config_name}"
    if len(name) <= 253:
        return name
    return f"{name[:244]}.{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def grant_labels(config_ns: str, config_name: str, uid: str) -> dict[str, str]:
    labels = evaluator_labels(config_name)
    labels[CONFIG_NAMESPACE_LABEL] = config_ns
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


def _subject(config_ns: str, config_name: str) -> Body:
    return {"kind": "ServiceAccount", "name": evaluator_name(config_name), "namespace": config_ns}


def build_grants(
    config_ns: str,
    config_name: str,
    uid: str,
    namespaces: Iterable[str],
    secrets: Mapping[str, Iterable[str]],
) -> list[Body]:
    """Roles + RoleBindings in ``namespaces`` (``secrets``: Secret names the evaluator may read there)."""
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
            # ... and so does its AlertConfig: here only rules, channels and their status
            rule["resources"] = [r for r in rule["resources"] if r != ALERT_CONFIGS]
            if not rule["resources"]:
                continue
            if rule["resources"] == ["secrets"]:
                if not names:  # an empty resourceNames would grant every Secret
                    continue
                rule = {**rule, "resourceNames": names}
            rules.append(rule)
        meta = {"name": name, "namespace": ns, "labels": labels}
        out.append({"apiVersion": RBAC, "kind": "Role", "metadata": copy.deepcopy(meta), "rules": rules})
        out.append(
            {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "metadata": copy.deepcopy(meta),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [subject],
            }
        )
    return out


# --------------------------------------------------------------------------------- apply
@dataclass
class GrantResult:
    drift: list[str] = field(default_factory=list)
    #: Namespaces that do not exist (yet): their Role is created when they appear.
    missing_namespaces: list[str] = field(default_factory=list)


async def apply_grants(kube: KubeClient, grants: list[Body]) -> GrantResult:
    """Create or correct every grant. A namespace that does not exist is noted, not an error.

    Raises KubeError / NotOwnedError for anything else.
    """
    result = GrantResult()
    for obj in grants:
        ns = obj["metadata"].get("namespace")
        if ns in result.missing_namespaces:
            continue
        try:
            applied = await ensure_object(kube, obj, None)
        except KubeError as exc:
            gone = exc.status == 404 and not exc.resource_missing
            terminating = exc.status == 403 and "being terminated" in exc.message
            if ns and (gone or terminating):  # no namespace (yet, or any more) to grant in
                result.missing_namespaces.append(ns)
                continue
            raise
        if applied.drift:
            result.drift.append(describe(obj))
    return result


async def delete_grants(
    kube: KubeClient, config_ns: str, config_name: str, uid: str, namespaces: Iterable[str]
) -> list[str]:
    """Delete the config's Role + RoleBinding in ``namespaces``: by name, and only objects labelled
    with ``uid``. Returns what it deleted."""
    name = grant_name(config_ns, config_name)
    deleted: list[str] = []
    for ns in namespaces:
        for kind, plural in GRANT_KINDS:
            ref = Ref(RBAC, plural, ns, name)
            live = await kube.get(ref)
            if live is None or labelled_owner(live) != uid:
                continue
            await kube.delete(ref, uid=(live.get("metadata") or {}).get("uid"))
            deleted.append(f"{kind} {ns}/{name}")
    if deleted:
        logger.info("AlertConfig %s/%s: deleted evaluator grants %s", config_ns, config_name, ", ".join(deleted))
    return deleted


async def collect_orphans(kube: KubeClient, live_uids: set[str], namespaces: Iterable[str] = ()) -> list[str]:
    """Grants whose AlertConfig is gone (deleted while the operator was not running).

    ``namespaces``: where to look when the operator watches only those (its Roles are there, and
    it may not list cluster-wide); empty: the whole cluster.
    """
    deleted: list[str] = []
    selector = f"{OWNER_UID_LABEL},{CONFIG_NAMESPACE_LABEL}"
    scopes: list[str | None] = list(namespaces) or [None]
    for kind, plural in GRANT_KINDS:
        found: list[Body] = []
        for ns in scopes:
            try:
                found += await kube.list(Ref(RBAC, plural, ns), label_selector=selector)
            except KubeError as exc:
                if exc.status != 403:
                    raise
                logger.warning("cannot list %s in %s (%s): grants of deleted AlertConfigs are not collected there",
                               plural, ns or "the whole cluster", exc.message)
        for live in found:
            meta = live.get("metadata") or {}
            uid = labelled_owner(live)
            if not uid or uid in live_uids:
                continue
            await kube.delete(Ref(RBAC, plural, meta.get("namespace"), meta["name"]), uid=meta.get("uid"))
            deleted.append(describe({"kind": kind, "metadata": meta}))
    if deleted:
        logger.info("deleted grants of AlertConfigs that no longer exist: %s", ", ".join(deleted))
    return deleted


__all__ = [
    "GrantResult",
    "apply_grants",
    "build_grants",
    "collect_orphans",
    "delete_grants",
    "grant_namespaces",
]
