"""The RBAC rules Klaxon needs: the one list the code, the chart and the tests agree on.

``OPERATOR_RULES`` is what the operator's ClusterRole grants (the chart renders exactly these;
``tests/chart/test_rbac.py`` compares). ``EVALUATOR_RULES`` is what the operator puts into the
namespaced Role of each AlertConfig's evaluator. The operator holds neither ``bind`` nor
``escalate``, so the API server lets it create that Role only while it holds every permission in
it itself: ``covers(OPERATOR_RULES, EVALUATOR_RULES)`` must stay true (a test checks it).

A rule is a dict ``{"apiGroups": [...], "resources": [...], "verbs": [...]}`` shaped like a
``rbac.authorization.k8s.io/v1`` PolicyRule, so it can be dropped into a Role as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import GROUP

Rule = dict[str, list[str]]

READ = ["get", "list", "watch"]
MANAGE = ["get", "list", "watch", "create", "update", "patch", "delete"]

KLAXON_KINDS = ["alertrules", "alertconfigs", "notificationchannels"]

OPERATOR_RULES: list[Rule] = [
    # Our kinds: the operator reads them and patches metadata (finalizers, kopf's progress
    # annotations). It never writes spec; status goes through the subresource.
    {"apiGroups": [GROUP], "resources": list(KLAXON_KINDS), "verbs": [*READ, "patch"]},
    {"apiGroups": [GROUP], "resources": [f"{k}/status" for k in KLAXON_KINDS], "verbs": ["get", "patch"]},
    # What it generates: PrometheusRules, and per AlertConfig an evaluator with its identity.
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["prometheusrules"], "verbs": list(MANAGE)},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": list(MANAGE)},
    {"apiGroups": [""], "resources": ["serviceaccounts", "services"], "verbs": list(MANAGE)},
    # No bind/escalate: the operator may only grant what it holds (see EVALUATOR_RULES).
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
     "verbs": list(MANAGE)},
    # To tell a NotificationChannel whether the keys its secretKeyRefs name exist.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": list(READ)},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # Leader election between replicas (ha.enabled); kopf's own peering is not used.
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "list", "watch", "create", "update", "patch"]},
    # Whether the PrometheusRule CRD is installed at all.
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": list(READ)},
    # kopf's cluster-wide namespace scanning.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]

EVALUATOR_RULES: list[Rule] = [
    {"apiGroups": [GROUP], "resources": list(KLAXON_KINDS), "verbs": list(READ)},
    {"apiGroups": [GROUP], "resources": ["alertrules/status", "notificationchannels/status"],
     "verbs": ["get", "patch"]},
    # The operator may narrow this with resourceNames to the Secrets the AlertConfig references.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    # One active replica per shard (`klaxon evaluator --lease`); only in the config's namespace.
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]},
]

# Resources that are not namespaced: a namespaced Role cannot grant them, so when the
# operator watches a fixed list of namespaces they stay in a (much smaller) ClusterRole.
CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset({
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("", "namespaces"),
})


def permissions(rules: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """Flatten rules into ``(apiGroup, resource, verb)`` triples (resourceNames are ignored)."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def covers(held: Iterable[Mapping[str, Any]], wanted: Iterable[Mapping[str, Any]]) -> bool:
    """Whether ``held`` grants every permission in ``wanted`` (wildcards in ``held`` count)."""
    return not missing(held, wanted)


Permission = tuple[str, str, str]


def missing(held: Iterable[Mapping[str, Any]], wanted: Iterable[Mapping[str, Any]]) -> list[Permission]:
    """The ``(apiGroup, resource, verb)`` triples of ``wanted`` that ``held`` does not grant."""
    have = permissions(held)

    def granted(group: str, resource: str, verb: str) -> bool:
        return any(
            g in (group, "*") and r in (resource, "*") and v in (verb, "*")
            for g, r, v in have
        )

    return sorted(p for p in permissions(wanted) if not granted(*p))


def split_scope(rules: Sequence[Mapping[str, Any]]) -> tuple[list[Rule], list[Rule]]:
    """Split rules into (cluster-scoped, namespaced) ones, keeping each rule's verbs together."""
    cluster: list[Rule] = []
    namespaced: list[Rule] = []
    for rule in rules:
        for group in rule["apiGroups"]:
            for scope, target in ((True, cluster), (False, namespaced)):
                resources = [r for r in rule["resources"]
                             if ((group, r.split("/")[0]) in CLUSTER_SCOPED) is scope]
                if resources:
                    verbs = list(rule["verbs"])
                    target.append({"apiGroups": [group], "resources": resources, "verbs": verbs})
    return cluster, namespaced
