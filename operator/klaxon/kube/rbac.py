"""The RBAC rules Klaxon needs: the one list the code, the chart and the tests agree on.

``OPERATOR_RULES`` is what the chart grants the operator: one ClusterRole when it watches the
whole cluster, else a Role per watched namespace plus a ClusterRole with only the cluster-scoped
reads (``tests/chart/test_chart_rbac.py`` compares; ``tests/e2e/test_least_privilege.py`` runs
the operator and an evaluator with exactly these rights on a real API server and counts 403s).

``EVALUATOR_RULES`` is what the operator puts into the namespaced Role of each AlertConfig's
evaluator. The operator holds neither ``bind`` nor ``escalate``, so the API server lets it create
that Role only while it holds every permission in it itself: ``covers(OPERATOR_RULES,
EVALUATOR_RULES)`` must stay true (a test checks it).

A rule is a dict ``{"apiGroups": [...], "resources": [...], "verbs": [...]}`` shaped like a
``rbac.authorization.k8s.io/v1`` PolicyRule, so it can be dropped into a Role as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..api.constants import ALERT_CONFIGS, ALERT_RULES, GROUP, NOTIFICATION_CHANNELS

Rule = dict[str, list[str]]

READ = ["get", "list", "watch"]
#: Neither process ever replaces an object (PUT): writes are creates, merge patches and deletes.
MANAGE = ["get", "list", "watch", "create", "patch", "delete"]

KLAXON_KINDS = [ALERT_RULES, ALERT_CONFIGS, NOTIFICATION_CHANNELS]

OPERATOR_RULES: list[Rule] = [
    # Our kinds: kopf lists and watches them; on configs and channels it patches metadata
    # (progress annotations); rules follow their watch events, nothing patches them. Never spec;
    # status goes through the subresource. `get` only because the evaluator's Role grants it (a
    # Role may hold only what its creator holds).
    {"apiGroups": [GROUP], "resources": [ALERT_RULES], "verbs": list(READ)},
    {"apiGroups": [GROUP], "resources": [ALERT_CONFIGS, NOTIFICATION_CHANNELS], "verbs": [*READ, "patch"]},
    {"apiGroups": [GROUP], "resources": [f"{k}/status" for k in KLAXON_KINDS], "verbs": ["patch"]},
    # What it generates: PrometheusRules, and per AlertConfig an evaluator with its identity;
    # watched for drift, deleted when no longer wanted (engine, shards, allowedNamespaces change).
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["prometheusrules"], "verbs": list(MANAGE)},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": list(MANAGE)},
    {"apiGroups": [""], "resources": ["serviceaccounts", "services"], "verbs": list(MANAGE)},
    # No bind/escalate: the operator may only grant what it holds (see EVALUATOR_RULES).
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
     "verbs": list(MANAGE)},
    # list/watch: which keys the Secrets that channels name hold (a kopf index keeps key names
    # only); get: the evaluator's Role grants it, narrowed to the Secrets its channels name.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": list(READ)},
    # Events (kopf's and ours) are always new objects.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    # Leader election between replicas (ha.enabled); kopf's own peering is not used.
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]},
    # kopf's resource discovery, and whether the PrometheusRule CRD appears.
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    # kopf's namespace scanning, and grants for namespaces an AlertConfig lists once they appear.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]

EVALUATOR_RULES: list[Rule] = [
    # Rules are listed and watched namespace by namespace; `get` names the object of an Event.
    {"apiGroups": [GROUP], "resources": [ALERT_RULES], "verbs": list(READ)},
    # Its own AlertConfig, followed by watch (fieldSelector metadata.name: the operator narrows
    # it by resourceNames, which the API server applies to such a list and watch too).
    {"apiGroups": [GROUP], "resources": [ALERT_CONFIGS], "verbs": list(READ)},
    {"apiGroups": [GROUP], "resources": [NOTIFICATION_CHANNELS], "verbs": ["get", "list"]},
    {"apiGroups": [GROUP], "resources": [f"{ALERT_RULES}/status", f"{NOTIFICATION_CHANNELS}/status"],
     "verbs": ["patch"]},
    # The operator may narrow this with resourceNames to the Secrets the AlertConfig references.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    # One active replica per shard (`klaxon evaluator --lease`); only in the config's namespace.
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]},
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
