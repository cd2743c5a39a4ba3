"""The chart's RBAC is exactly operator/klaxon/kube/rbac.py's OPERATOR_RULES, in both install modes."""

from __future__ import annotations

from typing import Any

import pytest

from klaxon.kube import rbac


def _roles(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _bound(docs: list[dict[str, Any]], role: dict[str, Any], sa: str) -> bool:
    binding_kind = "ClusterRoleBinding" if role["kind"] == "ClusterRole" else "RoleBinding"
    return any(
        b["roleRef"]["kind"] == role["kind"] and b["roleRef"]["name"] == role["metadata"]["name"]
        and b["metadata"].get("namespace") == role["metadata"].get("namespace")
        and {"kind": "ServiceAccount", "name": sa, "namespace": "klaxon-system"} in b["subjects"]
        for b in _roles(docs, binding_kind)
    )


def test_code_rules_are_least_privilege() -> None:
    for rules in (rbac.OPERATOR_RULES, rbac.EVALUATOR_RULES):
        for group, resource, verb in rbac.permissions(rules):
            assert "*" not in (group, resource, verb)
            assert verb not in {"bind", "escalate", "impersonate", "deletecollection"}
    # The operator creates the evaluator's Role; without escalate it must hold all of it.
    assert rbac.covers(rbac.OPERATOR_RULES, rbac.EVALUATOR_RULES)
    # Evaluators never get cluster-scoped access, so the operator never creates ClusterRoles or
    # ClusterRoleBindings (it is itself bound to one when it watches the whole cluster).
    assert not {r for _, r, _ in rbac.permissions(rbac.OPERATOR_RULES)} & {"clusterroles", "clusterrolebindings"}
    # Nothing is ever replaced: writes are creates, merge patches and deletes.
    assert not {v for _, _, v in rbac.permissions(rbac.OPERATOR_RULES + rbac.EVALUATOR_RULES)} & {"update"}
    assert not rbac.covers(rbac.EVALUATOR_RULES, rbac.OPERATOR_RULES)
    assert rbac.missing([], [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]) == [
        ("", "secrets", "get")]


def test_cluster_wide_rbac_equals_operator_rules(render) -> None:
    docs = render()
    [role] = _roles(docs, "ClusterRole")
    assert not _roles(docs, "Role")
    assert rbac.permissions(role["rules"]) == rbac.permissions(rbac.OPERATOR_RULES)
    assert _bound(docs, role, "klaxon")


def test_namespaced_rbac_equals_operator_rules(render) -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    [cluster] = _roles(docs, "ClusterRole")
    cluster_scoped, namespaced = rbac.split_scope(rbac.OPERATOR_RULES)
    assert rbac.permissions(cluster["rules"]) == rbac.permissions(cluster_scoped)
    roles = {r["metadata"]["namespace"]: r for r in _roles(docs, "Role") if r["metadata"]["name"] == "klaxon"}
    assert set(roles) == {"team-a", "team-b"}
    for ns, role in roles.items():
        assert rbac.permissions(role["rules"]) == rbac.permissions(namespaced), ns
        assert rbac.covers(role["rules"], rbac.EVALUATOR_RULES), f"cannot create evaluator Roles in {ns}"
        assert _bound(docs, role, "klaxon")
    # The operator's own namespace is not watched: it still needs its Lease and Events there.
    [own] = [r for r in _roles(docs, "Role") if r["metadata"]["namespace"] == "klaxon-system"]
    assert rbac.covers(own["rules"], [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                       "verbs": ["get", "create", "patch"]}])
    assert rbac.covers(rbac.OPERATOR_RULES, own["rules"])
    assert _bound(docs, own, "klaxon")


def test_no_leader_election_role_when_own_namespace_is_watched(render) -> None:
    docs = render({"watchNamespaces": ["klaxon-system"]})
    assert [r["metadata"]["namespace"] for r in _roles(docs, "Role")] == ["klaxon-system"]


def test_rbac_can_be_left_to_the_user(render) -> None:
    kinds = {d["kind"] for d in render({"rbac": {"create": False}})}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@pytest.mark.parametrize("extra", [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    {"apiGroups": ["klaxon.dev"], "resources": ["alertrules"], "verbs": ["update"]},
])
def test_comparison_notices_a_difference(render, extra: dict[str, Any]) -> None:
    [role] = _roles(render(), "ClusterRole")
    assert rbac.permissions([*role["rules"], extra]) != rbac.permissions(rbac.OPERATOR_RULES)
