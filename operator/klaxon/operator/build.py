"""Pure builders: what the operator wants to exist for an AlertConfig. No I/O, no kopf.

Every object carries ``app.kubernetes.io/*`` labels and ``klaxon.dev/alertconfig`` so the
operator can find (and the drift watch can recognise) its children; owner references and
the input hash are added by the apply layer.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..api.alertconfig import AlertConfigSpec
from ..api.constants import CONFIG_LABEL, MANAGED_BY, SHARD_LABEL
from ..kube.rbac import EVALUATOR_RULES

Body = dict[str, Any]

METRICS_PORT = 8080
EVALUATOR_UID = 65532
#: The evaluator's state volume (notification outbox), `klaxon evaluator --state-dir`.
STATE_DIR = "/var/lib/klaxon"
#: On the evaluator's pod template: a hash of the AlertConfig fields a running evaluator cannot
#: take over live (``pod_hash``). Changing them rolls the pods; every other field is followed by
#: the evaluator's own AlertConfig watch and leaves the template (and the pods) alone.
POD_HASH_ANNOTATION = "klaxon.dev/pod-config-hash"


def short_name(*parts: str, limit: int = 63) -> str:
    """``-``-joined parts cut to ``limit`` with a hash suffix, so distinct inputs stay distinct."""
    name = "-".join(parts)
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def evaluator_name(config_name: str) -> str:
    return short_name("klaxon-eval", config_name)


def deployment_name(config_name: str, shard: int) -> str:
    return short_name("klaxon-eval", config_name, str(shard))


def selector_labels(config_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "klaxon-evaluator",
        "app.kubernetes.io/instance": short_name(config_name),
    }


def evaluator_labels(config_name: str) -> dict[str, str]:
    return {
        **selector_labels(config_name),
        "app.kubernetes.io/component": "evaluator",
        "app.kubernetes.io/part-of": "klaxon",
        **MANAGED_BY,
        CONFIG_LABEL: short_name(config_name),
    }


def _meta(name: str, namespace: str, labels: Mapping[str, str]) -> Body:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def build_service_account(config_name: str, namespace: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(evaluator_name(config_name), namespace, evaluator_labels(config_name)),
    }


def secret_refs(value: Any) -> list[tuple[str, str, str]]:
    """Every ``{name, key}`` Secret reference inside a spec (as dumped to JSON): (path, name, key)."""
    found: list[tuple[str, str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            if set(node) == {"name", "key"} and all(isinstance(v, str) for v in node.values()):
                found.append((path, str(node["name"]), str(node["key"])))
                return
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(value, "spec")
    return found


def build_role(
    config_name: str, namespace: str, secret_names: Iterable[str], lease_names: Iterable[str] = ()
) -> Body:
    """The evaluator's namespaced Role: read rules and channels, its own AlertConfig, patch rule and
    channel status, read its Secrets, hold its shards' Leases (``lease_names``; create cannot be
    narrowed by name)."""
    rules: list[Body] = []
    names = sorted(set(secret_names))
    leases = sorted(set(lease_names))
    for rule in copy.deepcopy(EVALUATOR_RULES):
        if rule["resources"] == ["alertconfigs"]:
            rule = {**rule, "resourceNames": [config_name]}
        if rule["resources"] == ["secrets"]:
            if not names:  # an empty resourceNames would grant every Secret: leave the rule out
                continue
            rule = {**rule, "resourceNames": names}
        if rule["resources"] == ["leases"]:
            if not leases:
                continue
            rules.append({**rule, "verbs": ["create"]})
            rule = {**rule, "verbs": [v for v in rule["verbs"] if v != "create"], "resourceNames": leases}
        rules.append(rule)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(evaluator_name(config_name), namespace, evaluator_labels(config_name)),
        "rules": rules,
    }


def build_role_binding(config_name: str, namespace: str) -> Body:
    name = evaluator_name(config_name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace, evaluator_labels(config_name)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def _service(name: str, config_name: str, namespace: str, selector: Mapping[str, str], port: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, evaluator_labels(config_name)),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": port, "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def build_metrics_service(config_name: str, namespace: str) -> Body:
    return _service(evaluator_name(config_name), config_name, namespace, selector_labels(config_name), "metrics")


def events_service_name(config_name: str) -> str:
    return short_name("klaxon-events", config_name)


def build_events_service(config_name: str, namespace: str) -> Body:
    """``POST /v1/events`` reaches shard 0's active replica only: the one place that holds the
    grouping, cooldown and entry state (docs/events.md)."""
    selector = {**selector_labels(config_name), SHARD_LABEL: "0"}
    return _service(events_service_name(config_name), config_name, namespace, selector, "events")


def pod_hash(spec: AlertConfigSpec, image: str) -> str:
    """The hash of what needs new evaluator pods: the image, resources and shard count (each pod's
    ``--shard i/n``). Replicas only scale the Deployment; the rest applies live (docs/evaluator.md)."""
    ev = spec.evaluator
    fields = {"image": ev.image or image, "resources": ev.resources.model_dump(mode="json"), "shards": ev.shards}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _evaluator_container(
    config_name: str, namespace: str, spec: AlertConfigSpec, shard: int, image: str, pull_policy: str
) -> dict[str, Any]:
    """The evaluator container of one shard: its arguments, probes, resources and a locked-down context."""
    shards = spec.evaluator.shards
    ident = f"{namespace}/{config_name}"
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 5}
    # /readyz: the leader while its cycles keep finishing, and any standby (it forwards events to
    # the leader); so a rolling update can bring a new standby up before the old leader goes.
    ready = {**probe, "httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5}
    resources = spec.evaluator.resources
    container = {
        "name": "evaluator",
        "image": spec.evaluator.image or image,
        "imagePullPolicy": pull_policy,
        "command": ["klaxon"],
        "args": [
            "evaluator",
            "--config",
            ident,
            "--shard",
            f"{shard}/{shards}",
            "--metrics-port",
            str(METRICS_PORT),
            "--state-dir",
            STATE_DIR,
            # One active replica per shard even with replicas > 1 or during a rolling update.
            "--lease",
            deployment_name(config_name, shard),
        ],
        "env": [
            {"name": "KLAXON_CONFIG", "value": ident},
            {"name": "KLAXON_SHARD", "value": f"{shard}/{shards}"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            # the leader publishes it on its Lease: standbys forward events there
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "failureThreshold": 6},
        "readinessProbe": {**ready, "failureThreshold": 2},
        "resources": {"requests": dict(resources.requests), "limits": dict(resources.limits)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "state", "mountPath": STATE_DIR},
        ],
    }
    return container


def build_evaluator_deployment(
    config_name: str,
    namespace: str,
    spec: AlertConfigSpec,
    shard: int,
    image: str,
    pull_policy: str = "IfNotPresent",
    pull_secrets: Iterable[str] = (),
) -> Body:
    labels = {**evaluator_labels(config_name), SHARD_LABEL: str(shard)}
    selector = {**selector_labels(config_name), SHARD_LABEL: str(shard)}
    container = _evaluator_container(config_name, namespace, spec, shard, image, pull_policy)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(deployment_name(config_name, shard), namespace, labels),
        "spec": {
            "replicas": spec.evaluator.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": {POD_HASH_ANNOTATION: pod_hash(spec, image)}},
                "spec": {
                    "serviceAccountName": evaluator_name(config_name),
                    "automountServiceAccountToken": True,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": EVALUATOR_UID,
                        "runAsGroup": EVALUATOR_UID,
                        "fsGroup": EVALUATOR_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    # `state` holds the notification outbox: it survives container restarts, not the
                    # deletion of the pod (queued notifications are lost then; docs/evaluator.md).
                    "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "state", "emptyDir": {}}],
                    **({"imagePullSecrets": [{"name": n} for n in pull_secrets]} if pull_secrets else {}),
                },
            },
        },
    }


def build_config_children(
    config_name: str,
    namespace: str,
    spec: AlertConfigSpec,
    image: str,
    secret_names: Iterable[str],
    pull_policy: str = "IfNotPresent",
    pull_secrets: Iterable[str] = (),
) -> list[Body]:
    """Everything an AlertConfig needs, in apply order (identity and RBAC before the pods)."""
    if not spec.evaluator.enabled:
        return []
    leases = [deployment_name(config_name, i) for i in range(spec.evaluator.shards)]  # one per shard
    return [
        build_service_account(config_name, namespace),
        build_role(config_name, namespace, secret_names, leases),
        build_role_binding(config_name, namespace),
        build_metrics_service(config_name, namespace),
        *([build_events_service(config_name, namespace)] if spec.events.token is not None else []),
        *(
            build_evaluator_deployment(
                config_name, namespace, spec, i, image, pull_policy, tuple(pull_secrets)
            )
            for i in range(spec.evaluator.shards)
        ),
    ]
