"""Kubernetes RBAC, evaluated over the emulator's request log: would this identity have been allowed?

The emulator does not enforce RBAC; this replays its log against the Roles, ClusterRoles and
bindings stored in it, the way the API server's RBAC authorizer decides (verbs from the HTTP
method and the watch flag, subresources as ``plural/sub``, ``resourceNames`` only for requests
that name an object — by path, or a list/watch by ``fieldSelector=metadata.name=X`` —
ClusterRoles bound by a RoleBinding apply in that namespace only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kube_harness.emulator import EmulatedCluster, LoggedRequest

RBAC = "rbac.authorization.k8s.io/v1"


def verb_of(request: LoggedRequest) -> str:
    if request.method == "GET":
        if request.name:
            return "get"
        return "watch" if request.query.get("watch") in ("true", "1") else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[request.method]


def name_of(request: LoggedRequest) -> str | None:
    """The object a request names: its path's, or for a list/watch ``fieldSelector=metadata.name=X``
    (the API server's RequestInfo does the same, so resourceNames can allow such a watch)."""
    if request.name:
        return request.name
    selector = request.query.get("fieldSelector") or ""
    terms = [t.strip() for t in selector.split(",") if t.strip()]
    for term in terms:
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and key.strip() == "metadata.name" and not value.startswith("="):
                return value.strip()
    return None


def group_of(resource: str) -> tuple[str, str]:
    parts = resource.split("/")
    return ("", parts[-1]) if len(parts) == 2 else (parts[0], parts[-1])


def _subject_matches(subjects: Iterable[Mapping[str, Any]], sa: tuple[str, str]) -> bool:
    return any(s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) == sa for s in subjects)


def rules_for(kube: EmulatedCluster, sa: tuple[str, str], namespace: str | None) -> list[Mapping[str, Any]]:
    """Every PolicyRule that applies to ``sa`` for a request in ``namespace`` (None: cluster scope)."""
    rules: list[Mapping[str, Any]] = []

    def role_rules(kind: str, name: str, ns: str | None) -> list[Mapping[str, Any]]:
        if kind == "ClusterRole":
            role = kube.get_object(f"{RBAC}/clusterroles", name)
        else:
            role = kube.get_object(f"{RBAC}/roles", name, ns)
        return list((role or {}).get("rules") or [])

    for binding in kube.list_objects(f"{RBAC}/clusterrolebindings"):
        if _subject_matches(binding.get("subjects") or [], sa):
            rules += role_rules("ClusterRole", binding["roleRef"]["name"], None)
    if namespace is not None:
        for binding in kube.list_objects(f"{RBAC}/rolebindings", namespace):
            if _subject_matches(binding.get("subjects") or [], sa):
                rules += role_rules(binding["roleRef"]["kind"], binding["roleRef"]["name"], namespace)
    return rules


def allowed(kube: EmulatedCluster, sa: tuple[str, str], request: LoggedRequest) -> bool:
    assert request.resource, request.path
    group, plural = group_of(request.resource)
    resource = f"{plural}/{request.subresource}" if request.subresource else plural
    verb = verb_of(request)
    for rule in rules_for(kube, sa, request.namespace):
        if not ({group, "*"} & set(rule.get("apiGroups") or [])):
            continue
        if not ({resource, "*"} & set(rule.get("resources") or [])):
            continue
        if not ({verb, "*"} & set(rule.get("verbs") or [])):
            continue
        names = rule.get("resourceNames")
        if names and name_of(request) not in names:
            continue
        return True
    return False


def denied(kube: EmulatedCluster, sa: tuple[str, str], requests: Iterable[LoggedRequest]) -> list[str]:
    """``METHOD path`` of every request in ``requests`` that ``sa`` would not have been allowed."""
    return [f"{r.method} {r.path}?{r.query}" for r in requests if r.resource and not allowed(kube, sa, r)]
