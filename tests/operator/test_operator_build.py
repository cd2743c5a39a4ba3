"""Pure parts of the operator, without any API: builders, conditions, references, apply decisions."""

from __future__ import annotations

import collections
from typing import Any

import kopf
import pytest

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.api.constants import HASH_ANNOTATION
from klaxon.api.sharding import shard_of
from klaxon.kube.apply import diff_state, input_hash, is_subset, prepare
from klaxon.kube.rbac import EVALUATOR_RULES, OPERATOR_RULES, covers
from klaxon.operator.build import (
    build_config_children,
    build_evaluator_deployment,
    build_metrics_service,
    build_role,
    build_role_binding,
    build_service_account,
    secret_refs,
    short_name,
)
from klaxon.operator.conditions import Cond, build_conditions, ready_from, transitions
from klaxon.operator.refs import channel_condition, check_channels, resolve_config, rule_channels
from klaxon.operator.webhook import validator

OWNER = {
    "apiVersion": "klaxon.dev/v1alpha1",
    "kind": "AlertConfig",
    "metadata": {"name": "default", "namespace": "ns", "uid": "u-1"},
}


def config_spec(**kw: Any) -> AlertConfigSpec:
    return AlertConfigSpec.model_validate({"prometheus": {"url": "http://p:9090"}, **kw})


def test_events_service_only_with_a_token_and_only_to_shard_zero() -> None:
    from klaxon.operator.build import build_config_children

    plain = build_config_children("default", "ns", config_spec(evaluator={"shards": 2}), "img", [])
    assert [c["metadata"]["name"] for c in plain if c["kind"] == "Service"] == ["klaxon-eval-default"]
    spec = config_spec(evaluator={"shards": 2}, events={"token": {"name": "t", "key": "token"}})
    children = build_config_children("default", "ns", spec, "img", [])
    [events] = [c for c in children if c["metadata"]["name"] == "klaxon-events-default"]
    assert events["spec"]["selector"]["klaxon.dev/shard"] == "0"
    pods = {
        c["metadata"]["labels"]["klaxon.dev/shard"]: c["spec"]["template"]["metadata"]["labels"]
        for c in children
        if c["kind"] == "Deployment"
    }
    assert events["spec"]["selector"].items() <= pods["0"].items()
    assert not events["spec"]["selector"].items() <= pods["1"].items()


def test_evaluator_deployment_runs_the_shard_securely() -> None:
    spec = config_spec(evaluator={"shards": 3, "replicas": 2})
    dep = build_evaluator_deployment("default", "ns", spec, 1, "img:1")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:5] == ["evaluator", "--config", "ns/default", "--shard", "1/3"]
    assert {"name": "KLAXON_SHARD", "value": "1/3"} in container["env"]
    assert container["image"] == "img:1" and dep["spec"]["replicas"] == 2
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # ready only while holding the shard's Lease (standby replicas take no Service traffic)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    lease = container["args"][container["args"].index("--lease") + 1]
    assert lease == "klaxon-eval-default-1"
    labels = dep["metadata"]["labels"]
    assert labels["klaxon.dev/alertconfig"] == "default" and labels["app.kubernetes.io/component"] == "evaluator"
    assert labels["app.kubernetes.io/managed-by"] == "klaxon" and labels["klaxon.dev/shard"] == "1"
    # the selector picks this shard's pods only and is a subset of the pod labels
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert selector["klaxon.dev/shard"] == "1"
    assert pod["serviceAccountName"] == build_service_account("default", "ns")["metadata"]["name"]


def test_evaluator_deployment_keeps_the_outbox_on_a_state_volume() -> None:
    dep = build_evaluator_deployment("default", "ns", config_spec(), 0, "img:1")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[args.index("--state-dir") + 1] == "/var/lib/klaxon"
    assert {"name": "state", "mountPath": "/var/lib/klaxon"} in container["volumeMounts"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # read-only root needs both
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {}}
    assert container["securityContext"]["readOnlyRootFilesystem"]
    # the CLI accepts what the Deployment passes
    from klaxon.cli.main import build_parser

    parsed = build_parser().parse_args(args)
    assert parsed.state_dir == "/var/lib/klaxon" and parsed.config == "ns/default"


def test_evaluator_image_override_and_disabled_evaluator() -> None:
    assert (
        build_evaluator_deployment("c", "ns", config_spec(evaluator={"image": "own:2"}), 0, "img")["spec"]["template"][
            "spec"
        ]["containers"][0]["image"]
        == "own:2"
    )
    pod = build_evaluator_deployment("c", "ns", config_spec(), 0, "img", "Always", ["reg"])["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "reg"}] and pod["containers"][0]["imagePullPolicy"] == "Always"
    assert build_config_children("c", "ns", config_spec(evaluator={"enabled": False}), "img", []) == []
    kinds = [o["kind"] for o in build_config_children("c", "ns", config_spec(evaluator={"shards": 2}), "img", [])]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "Service", "Deployment", "Deployment"]


def test_role_grants_the_evaluator_rules_with_secrets_narrowed() -> None:
    role = build_role("c", "ns", ["b", "a", "a"], ["klaxon-eval-c-1", "klaxon-eval-c-0"])
    secrets = [r for r in role["rules"] if r["resources"] == ["secrets"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["a", "b"]}]
    # its shards' Leases only (create cannot be narrowed by name; nothing else in the namespace)
    leases = [r for r in role["rules"] if r["resources"] == ["leases"]]
    assert leases == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "patch"],
         "resourceNames": ["klaxon-eval-c-0", "klaxon-eval-c-1"]},
    ]
    # its own AlertConfig only (a watch with fieldSelector metadata.name=c is checked against resourceNames)
    configs = [r for r in role["rules"] if r["resources"] == ["alertconfigs"]]
    assert configs == [{"apiGroups": ["klaxon.dev"], "resources": ["alertconfigs"], "verbs": ["get", "list", "watch"],
                        "resourceNames": ["c"]}]
    assert covers(OPERATOR_RULES, role["rules"])  # the operator may only grant what it holds
    assert covers(role["rules"], EVALUATOR_RULES)  # every permission, narrowed by name where it can be
    # no Secret referenced: no Secret rule at all (an empty resourceNames would mean "every Secret")
    assert not [r for r in build_role("c", "ns", [])["rules"] if "secrets" in r["resources"]]
    binding = build_role_binding("c", "ns")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": role["metadata"]["name"], "namespace": "ns"}]


def test_metrics_service_selects_every_shard() -> None:
    svc = build_metrics_service("c", "ns")
    dep = build_evaluator_deployment("c", "ns", config_spec(), 0, "img")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["port"] == 8080


def test_secret_refs_finds_every_reference() -> None:
    spec = {
        "prometheus": {
            "auth": {"basicAuth": {"username": {"name": "s1", "key": "u"}, "password": {"name": "s1", "key": "p"}}}
        },
        "events": {"token": {"name": "tok", "key": "t"}},
        "configRef": {"name": "x"},
    }
    assert sorted(secret_refs(spec)) == [
        ("spec.events.token", "tok", "t"),
        ("spec.prometheus.auth.basicAuth.password", "s1", "p"),
        ("spec.prometheus.auth.basicAuth.username", "s1", "u"),
    ]


def test_shard_of_is_stable_and_spreads() -> None:
    assert shard_of("uid-r", 1) == 0
    assert shard_of("uid-r", 4) == shard_of("uid-r", 4)
    counts = collections.Counter(shard_of(f"uid-{i}", 4) for i in range(400))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 60


def test_short_name_keeps_limits_and_uniqueness() -> None:
    long_a, long_b = "a" * 80, "a" * 79 + "b"
    assert len(short_name("klaxon-eval", long_a)) <= 63
    assert short_name("klaxon-eval", long_a) != short_name("klaxon-eval", long_b)
    assert short_name("klaxon-eval", "x") == "klaxon-eval-x"


def test_conditions_keep_transition_time_unless_status_changes() -> None:
    first = build_conditions(None, [Cond("Ready", False, "ConfigNotFound", "m")], 1, now="T1")
    assert first[0]["lastTransitionTime"] == "T1" and first[0]["observedGeneration"] == 1
    same = build_conditions(first, [Cond("Ready", False, "ChannelNotFound", "m2")], 2, now="T2")
    assert same[0]["lastTransitionTime"] == "T1" and same[0]["reason"] == "ChannelNotFound"
    flipped = build_conditions(same, [Cond("Ready", True, "Ready")], 2, now="T3")
    assert flipped[0]["lastTransitionTime"] == "T3"
    assert [c["reason"] for c in transitions(same, flipped)] == ["Ready"]
    assert transitions(flipped, flipped) == []


def test_ready_takes_the_first_failing_reason() -> None:
    ok = Cond("Valid", True, "Valid")
    assert ready_from([ok, Cond("Synced", True, "Applied")]).ok is True
    ready = ready_from([ok, Cond("Synced", False, "ApplyFailed", "boom"), Cond("X", False, "Other")])
    assert (ready.status, ready.reason, ready.message) == ("False", "ApplyFailed", "boom")


def _config_body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "default", "namespace": "a"},
        "spec": {"prometheus": {"url": "http://p"}, **spec},
    }


def test_resolve_config_and_cross_namespace_policy() -> None:
    rule = AlertRuleSpec.model_validate(
        {
            "query": {"expr": "up"},
            "condition": {"type": "threshold", "threshold": 1},
            "configRef": {"name": "default", "namespace": "a"},
        }
    )
    key, cfg, problem = resolve_config("b", rule, {})
    assert key == ("a", "default") and cfg is None and problem is not None and problem.reason == "ConfigNotFound"
    _, _, problem = resolve_config("b", rule, {("a", "default"): _config_body()})
    assert (
        problem is not None and problem.reason == "CrossNamespaceRefDenied" and "allowedNamespaces" in problem.message
    )
    _, cfg, problem = resolve_config("b", rule, {("a", "default"): _config_body(allowedNamespaces=["b"])})
    assert problem is None and cfg is not None
    _, _, problem = resolve_config("b", rule, {("a", "default"): _config_body(allowedNamespaces=["*"])})
    assert problem is None
    # channels: the rule's own in its namespace, else the config's defaults in the config's namespace
    assert rule_channels("b", rule, ("a", "default"), config_spec(defaults={"channels": ["x"]})) == [("a", "x")]


def test_channel_readiness_needs_every_secret_key() -> None:
    body = {
        "metadata": {"name": "c", "namespace": "n"},
        "spec": {"type": "slack", "slack": {"webhookUrl": {"name": "s", "key": "url"}}},
    }
    assert channel_condition(body, {}).reason == "SecretNotFound"
    missing_key = channel_condition(body, {("n", "s"): {"other"}})
    assert missing_key.reason == "SecretKeyNotFound" and "'url'" in missing_key.message
    assert channel_condition(body, {("n", "s"): {"url"}}).ok is True
    invalid = channel_condition({**body, "spec": {"type": "slack"}}, {})
    assert invalid.reason == "InvalidSpec" and "spec.slack" in invalid.message
    assert check_channels([("n", "c")], {}, {}).reason == "ChannelNotFound"  # type: ignore[union-attr]
    assert check_channels([("n", "c")], {("n", "c"): body}, {}).reason == "ChannelNotReady"  # type: ignore[union-attr]
    assert check_channels([("n", "c")], {("n", "c"): body}, {("n", "s"): {"url"}}) is None


def test_apply_decisions_hash_subset_and_drift() -> None:
    desired = prepare(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {"ports": [{"port": 80}]},
        },
        OWNER,
    )
    assert desired["metadata"]["ownerReferences"][0] == {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertConfig",
        "name": "default",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert desired["metadata"]["annotations"][HASH_ANNOTATION] == input_hash(desired)
    live = {
        **desired,
        "metadata": {**desired["metadata"], "uid": "x", "resourceVersion": "5"},
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "10.0.0.1"},
    }
    assert diff_state(desired, live) is None  # server defaults are not drift
    edited = {**live, "spec": {"ports": [{"port": 81}]}}
    assert diff_state(desired, edited) == "modified"
    newer = prepare({**desired, "metadata": {"name": "s", "namespace": "ns"}, "spec": {"ports": [{"port": 82}]}}, OWNER)
    assert diff_state(newer, live) == "inputs"
    assert is_subset({"a": [1, {"b": 2}]}, {"a": [1.0, {"b": 2, "c": 3}], "d": 4})
    assert not is_subset({"a": [1]}, {"a": [1, 2]}) and not is_subset({"x": True}, {"x": 1})


def test_validate_handler_rejects_with_field_problems() -> None:
    validate = validator("AlertRule")
    good = {
        "metadata": {"name": "ok"},
        "spec": {"query": {"expr": "up"}, "condition": {"type": "threshold", "threshold": 1}},
    }
    validate(body=kopf.Body(good), operation="CREATE")
    bad = {
        "metadata": {"name": "bad"},
        "spec": {"query": {"expr": "up"}, "severity": "urgent", "condition": {"type": "threshold"}},
    }
    with pytest.raises(kopf.AdmissionError) as err:
        validate(body=kopf.Body(bad), operation="CREATE")
    assert err.value.code == 422
    message = str(err.value)
    assert "AlertRule bad is invalid" in message and "spec.severity" in message and "allowed" in message
    validate(body=kopf.Body(bad), operation="DELETE")  # deleting an invalid object is always allowed


#: Every AlertConfig field the evaluator follows live (docs/evaluator.md), with a changed value.
LIVE_EDITS: dict[str, dict[str, Any]] = {
    "silences": {"silences": [{"matchers": [{"label": "zone", "value": "a"}], "until": "2030-01-01T00:00:00Z"}]},
    "silencedUntil": {"silencedUntil": "2030-01-01T00:00:00Z"},
    "muteTimeIntervals": {
        "muteTimeIntervals": [
            {
                "name": "nights",
                "schedule": {"timezone": "UTC", "windows": [{"days": ["Mon"], "start": "01:00", "end": "02:00"}]},
            }
        ]
    },
    "grouping": {"grouping": {"window": "10m", "minEvents": 3, "groupBy": ["zone"]}},
    "defaults": {"defaults": {"interval": "30s", "channels": ["pager"]}},
    "prometheus.url": {"prometheus": {"url": "http://other:9090"}},
    "prometheus.auth": {"prometheus": {"url": "http://p:9090", "auth": {"bearerToken": {"name": "s", "key": "t"}}}},
    "prometheus.tls": {"prometheus": {"url": "https://p:9090", "tls": {"insecureSkipVerify": True}}},
    "prometheus.timeout": {"prometheus": {"url": "http://p:9090", "timeout": "5s"}},
    "statusInterval": {"evaluator": {"statusInterval": "1m"}},
    "maxStatusWritesPerMinute": {"evaluator": {"maxStatusWritesPerMinute": 7}},
    "entries": {"entries": {"allowCustomAction": False, "ackMechanisms": ["button"]}},
    "allowedNamespaces": {"allowedNamespaces": ["team-a", "team-b"]},
    "events": {"events": {"token": {"name": "tok", "key": "token"}, "maxBatch": 10, "queueSize": 100}},
    "prometheusRule": {"prometheusRule": {"labels": {"release": "x"}}},
    "allowPrivateChannelAddresses": {"allowPrivateChannelAddresses": True},
}


def _pod_templates(spec: AlertConfigSpec, image: str = "img:1") -> list[Any]:
    return [
        (c["spec"]["template"], c["spec"]["replicas"])
        for c in build_config_children("c", "ns", spec, image, [])
        if c["kind"] == "Deployment"
    ]


@pytest.mark.parametrize("field", sorted(LIVE_EDITS))
def test_a_live_applicable_field_leaves_the_evaluator_pods_alone(field: str) -> None:
    """The evaluator follows these fields by watch: a change must not roll (restart) its pods."""
    base = AlertConfigSpec.model_validate({"prometheus": {"url": "http://p:9090"}, "evaluator": {"shards": 2}})
    edited = AlertConfigSpec.model_validate(
        {**base.model_dump(mode="json", by_alias=True, exclude_defaults=True), **LIVE_EDITS[field]}
        | ({"evaluator": {"shards": 2, **LIVE_EDITS[field]["evaluator"]}} if "evaluator" in LIVE_EDITS[field] else {})
    )
    assert edited != base
    assert _pod_templates(edited) == _pod_templates(base)


@pytest.mark.parametrize(
    ("field", "evaluator"),
    [
        ("image", {"image": "registry.example/klaxon:2"}),
        ("resources", {"resources": {"limits": {"memory": "1Gi"}}}),
        ("shards", {"shards": 3}),
    ],
)
def test_a_field_that_needs_new_pods_changes_the_pod_template_hash(field: str, evaluator: dict[str, Any]) -> None:
    from klaxon.operator.build import POD_HASH_ANNOTATION

    base = config_spec(evaluator={"shards": 2})
    edited = config_spec(evaluator={"shards": 2, **evaluator})
    before = {t["metadata"]["annotations"][POD_HASH_ANNOTATION] for t, _ in _pod_templates(base)}
    after = {t["metadata"]["annotations"][POD_HASH_ANNOTATION] for t, _ in _pod_templates(edited)}
    assert len(before) == len(after) == 1 and before != after  # every shard's pods roll


def test_replicas_scale_without_a_rollout_and_the_operator_image_counts_in_the_hash() -> None:
    from klaxon.operator.build import POD_HASH_ANNOTATION

    one, three = _pod_templates(config_spec()), _pod_templates(config_spec(evaluator={"replicas": 3}))
    assert [t for t, _ in one] == [t for t, _ in three] and [r for _, r in three] == [3]
    hashes = {
        t["metadata"]["annotations"][POD_HASH_ANNOTATION]
        for img in ("a:1", "a:2")
        for t, _ in _pod_templates(config_spec(), img)
    }
    assert len(hashes) == 2  # upgrading the operator's default evaluator image rolls the pods too
