"""The whole operator (kopf + Klaxon's registry) against the emulated API: lifecycle of each kind."""

from __future__ import annotations

import asyncio
import base64
import datetime

from klaxon.api.sharding import shard_of
from klaxon.kube.rbac import OPERATOR_RULES, missing
from kube_harness import EmulatedCluster, OperatorRunner, wait_for
from support.operator_helpers import (
    AC,
    AR,
    DEPLOY,
    NC,
    NS,
    PR,
    SECRET,
    alert_config,
    bookkeeping_annotations,
    channel,
    condition,
    rule,
    secret,
    wait_condition,
)

EVENTS = "v1/events"


def events_for(kube: EmulatedCluster, name: str) -> list[dict]:
    return [e for e in kube.list_objects(EVENTS, NS) if e["involvedObject"]["name"] == name]


async def test_rule_lifecycle(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config(), NS)
    created = kube.create_object(AR, rule("latency"), NS)
    ready = await wait_condition(kube, AR, "latency", "True", "Ready")
    assert ready["observedGeneration"] == 1

    pr = kube.get_object(PR, "klaxon-latency", NS)
    assert pr is not None
    (owner,) = pr["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "name": "latency",
        "uid": created["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert pr["metadata"]["labels"]["release"] == "kps"  # the config's ruleSelector labels
    assert pr["metadata"]["annotations"]["klaxon.dev/input-hash"]
    status = kube.get_object(AR, "latency", NS)["status"]  # type: ignore[index]
    assert status["engine"] == "prometheus" and status["observedGeneration"] == 1
    assert status["prometheusRuleRef"] == {"name": "klaxon-latency", "namespace": NS}
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "Valid": "Valid",
        "Synced": "Applied",
        "Ready": "Ready",
    }
    # a first status that is all good is no news: no Event (failures and recoveries have one)
    await asyncio.sleep(0.3)
    assert events_for(kube, "latency") == []
    # created without a GET first: one POST, no read of the PrometheusRule
    assert kube.requests("GET", PR, name="klaxon-latency") == [] and len(kube.requests("POST", PR)) == 1

    # update: the PrometheusRule follows, observedGeneration too; one write of the child
    kube.patch_object(AR, "latency", {"spec": {"condition": {"threshold": 0.9}}}, NS)
    await wait_for(lambda: condition(kube, AR, "latency").get("observedGeneration") == 2)
    pr2 = kube.get_object(PR, "klaxon-latency", NS)
    assert pr2 is not None and "0.9" in pr2["spec"]["groups"][0]["rules"][0]["expr"]
    assert (
        pr2["metadata"]["annotations"]["klaxon.dev/input-hash"]
        != pr["metadata"]["annotations"]["klaxon.dev/input-hash"]
    )
    assert len(kube.requests("POST", PR)) == 1

    # no finalizer (owner references do the cleanup), kopf's bookkeeping only under klaxon.dev/
    body = kube.get_object(AR, "latency", NS)
    assert body is not None and not body["metadata"].get("finalizers")
    annotations = body["metadata"].get("annotations") or {}
    assert [k for k in annotations if "kopf" in k or "last-handled" in k] == list(bookkeeping_annotations(body))
    # the operator never writes spec, and writes status only through /status
    for r in kube.requests(resource=AR, writes_only=True):
        assert not r.touches("spec"), r
        assert r.subresource == "status" or not r.touches("status"), r

    kube.delete_object(AR, "latency", NS)
    await wait_for(lambda: kube.get_object(AR, "latency", NS) is None)
    await wait_for(lambda: kube.get_object(PR, "klaxon-latency", NS) is None, message="PrometheusRule GC")


async def test_status_is_written_only_on_change(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config(), NS)
    kube.create_object(AR, rule("quiet"), NS)
    await wait_condition(kube, AR, "quiet", "True")
    await asyncio.sleep(0.3)
    writes = len(kube.requests("PATCH", AR, name="quiet", subresource="status"))
    assert writes == 1
    # a label change triggers the update handler, a resync-like reconcile: nothing to write
    kube.patch_object(AR, "quiet", {"metadata": {"labels": {"touched": "yes"}}}, NS)
    await asyncio.sleep(0.5)
    assert len(kube.requests("PATCH", AR, name="quiet", subresource="status")) == writes
    assert len(kube.requests("PATCH", PR)) == 0 and len(kube.requests("POST", PR)) == 1


async def test_config_lifecycle_builds_the_evaluator(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(SECRET, secret("prom-auth", token="t0ken"), NS)
    cfg = alert_config(
        "site",
        evaluator={"shards": 2},
        prometheus={"url": "http://p:9090", "auth": {"bearerToken": {"name": "prom-auth", "key": "token"}}},
    )
    created = kube.create_object(AC, cfg, NS)
    uids = [kube.create_object(AR, rule(f"r{i}", config="site"), NS)["metadata"]["uid"] for i in range(12)]
    await wait_for(lambda: (kube.get_object(AC, "site", NS) or {}).get("status", {}).get("rulesAssigned") == 12)
    await wait_condition(kube, AC, "site", "False", "EvaluatorNotReady")

    uid = created["metadata"]["uid"]
    for resource, name in (
        ("v1/serviceaccounts", "klaxon-eval-site"),
        ("v1/services", "klaxon-eval-site"),
        ("rbac.authorization.k8s.io/v1/roles", "klaxon-eval-site"),
        ("rbac.authorization.k8s.io/v1/rolebindings", "klaxon-eval-site"),
        (DEPLOY, "klaxon-eval-site-0"),
        (DEPLOY, "klaxon-eval-site-1"),
    ):
        obj = kube.get_object(resource, name, NS)
        assert obj is not None, (resource, name)
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
        assert obj["metadata"]["ownerReferences"][0]["controller"] is True
    role = kube.get_object("rbac.authorization.k8s.io/v1/roles", "klaxon-eval-site", NS)
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": ["prom-auth"],
    } in role["rules"]  # type: ignore[index]
    status = kube.get_object(AC, "site", NS)["status"]  # type: ignore[index]
    assert status["evaluatorReady"] is False
    assert [s["index"] for s in status["shards"]] == [0, 1]
    # the same split the evaluators make: by a stable hash of each rule's uid
    assert [s["rules"] for s in status["shards"]] == [sum(shard_of(u, 2) == i for u in uids) for i in (0, 1)]

    # pods become ready (the Deployment controller's job, faked here) → Ready
    for i in range(2):
        kube.patch_object(DEPLOY, f"klaxon-eval-site-{i}", {"status": {"readyReplicas": 1}}, NS, subresource="status")
    await wait_condition(kube, AC, "site", "True", "Ready")
    assert kube.get_object(AC, "site", NS)["status"]["evaluatorReady"] is True  # type: ignore[index]

    # fewer shards: the surplus Deployment goes
    kube.patch_object(AC, "site", {"spec": {"evaluator": {"shards": 1}}}, NS)
    await wait_for(lambda: kube.get_object(DEPLOY, "klaxon-eval-site-1", NS) is None)
    await wait_for(lambda: len(kube.get_object(AC, "site", NS)["status"]["shards"]) == 1)  # type: ignore[index]

    # deleting the config garbage-collects the evaluator; its rules now say why they are not ready
    kube.delete_object(AC, "site", NS)
    await wait_for(lambda: kube.get_object(DEPLOY, "klaxon-eval-site-0", NS) is None)
    await wait_condition(kube, AR, "r0", "False", "ConfigNotFound")


async def test_channel_ready_follows_its_secret(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(NC, channel("slack", secret="hooks", key="url"), NS)
    missing_secret = await wait_condition(kube, NC, "slack", "False", "SecretNotFound")
    assert "Secret hooks not found" in missing_secret["message"]

    kube.create_object(SECRET, secret("hooks", other="https://hooks.slack.com/services/SECRET1"), NS)
    missing_key = await wait_condition(kube, NC, "slack", "False", "SecretKeyNotFound")
    assert "'url'" in missing_key["message"]

    value = "https://hooks.slack.com/services/SECRET2"
    kube.patch_object(SECRET, "hooks", {"data": {"url": base64.b64encode(value.encode()).decode()}}, NS)
    await wait_condition(kube, NC, "slack", "True", "Ready")

    # never copied anywhere: not in status, events or any request the operator made
    for r in kube.log:
        if r.method != "GET" and r.resource != SECRET:
            assert "SECRET1" not in str(r.body) and "SECRET2" not in str(r.body), r
    assert not kube.requests(resource=SECRET, writes_only=True)

    kube.delete_object(SECRET, "hooks", NS)
    await wait_condition(kube, NC, "slack", "False", "SecretNotFound")


async def test_channel_ready_says_when_the_evaluator_reports_deliveries_failing(
    kube: EmulatedCluster, operator: OperatorRunner
) -> None:
    """The evaluator writes status.queue; the operator folds it into Ready (DeliveryFailing) at once
    — no resync — and back; the evaluator posts the outage's Events, so the operator posts none."""
    kube.create_object(SECRET, secret("hooks", url="https://hooks.example/services/X"), NS)
    kube.create_object(NC, channel("slack", secret="hooks", key="url"), NS)
    await wait_condition(kube, NC, "slack", "True", "Ready")
    queue = {"pending": 4, "oldestPendingTime": "2026-01-01T00:00:00Z", "failingSince": "2026-01-01T00:00:05Z",
             "lastError": "HTTP 503"}
    kube.patch_object(NC, "slack", {"status": {"queue": queue}}, NS, subresource="status")
    failing = await wait_condition(kube, NC, "slack", "False", "DeliveryFailing")
    assert "since 2026-01-01T00:00:05Z" in failing["message"] and "4 notification(s) waiting" in failing["message"]
    assert "last error: HTTP 503" in failing["message"]
    assert condition(kube, NC, "slack", "Valid")["status"] == "True"
    cleared = {"pending": 0, "oldestPendingTime": None, "failingSince": None, "lastError": ""}
    kube.patch_object(NC, "slack", {"status": {"queue": cleared}}, NS, subresource="status")
    await wait_condition(kube, NC, "slack", "True", "Ready")
    await asyncio.sleep(0.3)
    assert not [e for e in events_for(kube, "slack") if "DeliveryFailing" in (e["reason"], e["message"])]


async def test_late_references_become_ready_without_resync(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    """The operator's resync is an hour here: only the reference watches can make these pass."""
    kube.create_object(AR, rule("early", channels=["pager"]), NS)
    missing_cfg = await wait_condition(kube, AR, "early", "False", "ConfigNotFound")
    assert "AlertConfig team-a/default does not exist" in missing_cfg["message"]
    assert kube.get_object(PR, "klaxon-early", NS) is None

    kube.create_object(AC, alert_config(), NS)
    no_channel = await wait_condition(kube, AR, "early", "False", "ChannelNotFound")
    assert "team-a/pager" in no_channel["message"]
    assert kube.get_object(PR, "klaxon-early", NS) is not None  # applied as soon as the config exists
    assert condition(kube, AR, "early", "Synced")["status"] == "True"

    kube.create_object(NC, channel("pager", secret="pd", key="key"), NS)
    await wait_condition(kube, AR, "early", "False", "ChannelNotReady")
    kube.create_object(SECRET, secret("pd", key="k"), NS)
    await wait_condition(kube, AR, "early", "True", "Ready")

    # the config's default channels apply to rules naming none
    kube.patch_object(AC, "default", {"spec": {"defaults": {"channels": ["fallback"]}}}, NS)
    kube.create_object(AR, rule("defaulted"), NS)
    await wait_condition(kube, AR, "defaulted", "False", "ChannelNotFound")
    kube.create_object(NC, channel("fallback", secret="pd", key="key"), NS)
    await wait_condition(kube, AR, "defaulted", "True", "Ready")


async def test_cross_namespace_reference_needs_permission(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config("shared"), NS)
    kube.create_object(AR, rule("foreign", config="shared", config_ns=NS), "team-b")
    denied = await wait_condition(kube, AR, "foreign", "False", "CrossNamespaceRefDenied", namespace="team-b")
    assert "does not allow rules from namespace team-b" in denied["message"]
    assert kube.get_object(PR, "klaxon-foreign", "team-b") is None

    kube.patch_object(AC, "shared", {"spec": {"allowedNamespaces": ["team-b"]}}, NS)
    await wait_condition(kube, AR, "foreign", "True", "Ready", namespace="team-b")
    pr = kube.get_object(PR, "klaxon-foreign", "team-b")  # next to its rule (owner references are namespaced)
    assert pr is not None and pr["metadata"]["labels"]["release"] == "kps"
    await wait_for(lambda: kube.get_object(AC, "shared", NS)["status"].get("rulesAssigned") == 1)  # type: ignore


async def test_prometheusrule_drift_is_restored(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config(), NS)
    kube.create_object(AR, rule("guarded"), NS)
    await wait_condition(kube, AR, "guarded", "True")
    original = kube.get_object(PR, "klaxon-guarded", NS)
    assert original is not None

    kube.patch_object(PR, "klaxon-guarded", {"spec": {"groups": []}}, NS)  # a hand edit
    synced = await wait_condition(kube, AR, "guarded", "True", "DriftCorrected", type_="Synced")
    assert "modified by hand" in synced["message"]
    await wait_for(lambda: kube.get_object(PR, "klaxon-guarded", NS)["spec"] == original["spec"])  # type: ignore
    await wait_for(lambda: [e for e in events_for(kube, "guarded") if e["reason"] == "DriftCorrected"])

    kube.delete_object(PR, "klaxon-guarded", NS)  # a hand deletion
    await wait_for(lambda: kube.get_object(PR, "klaxon-guarded", NS) is not None, message="recreated")
    synced = await wait_condition(kube, AR, "guarded", "True", "DriftCorrected", type_="Synced")
    await wait_for(lambda: "deleted by hand" in condition(kube, AR, "guarded", "Synced")["message"])
    assert condition(kube, AR, "guarded")["status"] == "True"

    # a spec change clears the note
    kube.patch_object(AR, "guarded", {"spec": {"severity": "critical"}}, NS)
    await wait_condition(kube, AR, "guarded", "True", "Applied", type_="Synced")


async def test_evaluator_drift_is_restored(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config(), NS)
    await wait_for(lambda: kube.get_object(DEPLOY, "klaxon-eval-default-0", NS))
    kube.patch_object(DEPLOY, "klaxon-eval-default-0", {"spec": {"replicas": 5}}, NS)
    await wait_for(lambda: kube.get_object(DEPLOY, "klaxon-eval-default-0", NS)["spec"]["replicas"] == 1)  # type: ignore
    await wait_condition(kube, AC, "default", "True", "DriftCorrected", type_="Synced")
    kube.delete_object("v1/services", "klaxon-eval-default", NS)
    await wait_for(lambda: kube.get_object("v1/services", "klaxon-eval-default", NS), message="Service back")


async def test_invalid_rule_does_not_block_others(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config(), NS)
    bad = rule("broken")
    bad["spec"]["condition"] = {"type": "threshold", "operator": "above"}
    bad["spec"]["trigger"] = {"for": "five minutes"}
    kube.create_object(AR, bad, NS)
    for i in range(5):
        kube.create_object(AR, rule(f"fine-{i}"), NS)
    for i in range(5):
        await wait_condition(kube, AR, f"fine-{i}", "True")
    invalid = await wait_condition(kube, AR, "broken", "False", "InvalidSpec")
    assert "spec.condition.operator" in invalid["message"] and "allowed" in invalid["message"]
    assert "spec.trigger.for" in invalid["message"]
    assert condition(kube, AR, "broken", "Valid")["reason"] == "InvalidSpec"
    assert kube.get_object(PR, "klaxon-broken", NS) is None
    await wait_for(
        lambda: [e for e in events_for(kube, "broken") if e["type"] == "Warning" and e["reason"] == "InvalidSpec"]
    )


async def test_unparseable_query_is_not_ready(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    """A cluster without the webhook stores a rule whose PromQL does not parse: Ready says so."""
    kube.create_object(AC, alert_config(), NS)
    bad = rule("unclosed")
    bad["spec"]["query"] = {"expr": "rate(http_errors_total[5m]"}
    kube.create_object(AR, bad, NS)
    ready = await wait_condition(kube, AR, "unclosed", "False", "InvalidQuery")
    assert "spec.query.expr: invalid PromQL at line 1, column 5: unclosed left parenthesis" in ready["message"]
    assert condition(kube, AR, "unclosed", "Valid")["reason"] == "InvalidQuery"
    assert kube.get_object(PR, "klaxon-unclosed", NS) is None


async def test_missing_prometheusrule_crd(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    import pathlib

    import yaml

    kube.uninstall(PR)
    kube.create_object(AC, alert_config(), NS)
    kube.create_object(AR, rule("waiting"), NS)
    crd_missing = await wait_condition(kube, AR, "waiting", "False", "PrometheusRuleCRDMissing")
    assert "not installed" in crd_missing["message"]

    crd = yaml.safe_load((pathlib.Path(__file__).parents[1] / "data" / "prometheusrules-crd.yaml").read_text())
    kube.create_object("apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    await wait_condition(kube, AR, "waiting", "True", "Ready", timeout=10)
    assert kube.get_object(PR, "klaxon-waiting", NS) is not None
    # the operator follows PrometheusRules again now that they exist: a hand edit is undone
    kube.patch_object(PR, "klaxon-waiting", {"spec": {"groups": []}}, NS)
    await wait_condition(kube, AR, "waiting", "True", "DriftCorrected", type_="Synced", timeout=10)
    assert (kube.get_object(PR, "klaxon-waiting", NS) or {})["spec"]["groups"]


async def test_apply_failure_is_reported_and_retried(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config(), NS)
    await asyncio.sleep(0.1)
    kube.inject_error(500, method="POST", resource=PR, times=1)
    kube.create_object(AR, rule("flaky"), NS)
    await wait_condition(kube, AR, "flaky", "True", "Ready", timeout=10)
    # The retry can land before a poll sees the failure: read it from the object's history.
    readies = [
        c
        for version in kube.history(AR, "flaky", NS)
        for c in ((version or {}).get("status") or {}).get("conditions") or []
        if c["type"] == "Ready"
    ]
    failed = [c for c in readies if c["status"] == "False" and c["reason"] == "ApplyFailed"]
    assert failed and "500" in failed[0]["message"], readies
    assert readies[-1]["status"] == "True"
    kube.server_errors.clear()
    kube.log[:] = [r for r in kube.log if r.status < 500]  # the injected fault is not a harness failure


async def _quiet(kube: EmulatedCluster, still: float = 1.0, limit: float = 20.0) -> None:
    """Wait until no write (Events aside) has reached the cluster for `still` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    seen, since = -1, loop.time()
    while loop.time() < deadline:
        count = sum(1 for r in kube.log if r.is_write and r.resource != EVENTS)
        if count != seen:
            seen, since = count, loop.time()
        elif loop.time() - since >= still:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the operator kept writing for {limit} s")


async def test_restart_resumes_without_duplicates(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(NC, channel("pager", secret="pd", key="key"), NS)
    kube.create_object(SECRET, secret("pd", key="k"), NS)
    kube.create_object(AC, alert_config(), NS)
    for i in range(4):
        kube.create_object(AR, rule(f"keep-{i}", channels=["pager"]), NS)
    for i in range(4):
        await wait_condition(kube, AR, f"keep-{i}", "True")
    await wait_condition(kube, NC, "pager", "True")
    await _quiet(kube)  # a fixed sleep let late first-pass writes count as restart writes under load
    writes_before = [r for r in kube.log if r.is_write and r.resource != EVENTS]
    reads_before = [r for r in kube.requests("GET", PR) if r.name]

    await operator.restart()
    await asyncio.sleep(1.5)
    writes_after = [r for r in kube.log if r.is_write and r.resource != EVENTS][len(writes_before) :]
    assert [(r.method, r.resource, r.name) for r in writes_after] == []
    # each PrometheusRule is compared with what the watch listed: no GET of one per rule
    assert [r.name for r in kube.requests("GET", PR) if r.name][len(reads_before) :] == []
    assert len(kube.list_objects(PR, NS)) == 4 and len(kube.list_objects(DEPLOY, NS)) == 1
    for i in range(4):
        assert condition(kube, AR, f"keep-{i}")["status"] == "True"
    # the restarted operator still reacts
    kube.patch_object(AR, "keep-0", {"spec": {"severity": "critical"}}, NS)
    await wait_for(lambda: condition(kube, AR, "keep-0").get("observedGeneration") == 2)


async def test_every_api_call_is_in_the_rbac_list(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(SECRET, secret("pd", key="k"), NS)
    kube.create_object(NC, channel("pager", secret="pd", key="key"), NS)
    kube.create_object(AC, alert_config(evaluator={"shards": 2}), NS)
    kube.create_object(AR, rule("a", channels=["pager"]), NS)
    await wait_condition(kube, AR, "a", "True")
    kube.delete_object(PR, "klaxon-a", NS)
    kube.patch_object(AC, "default", {"spec": {"evaluator": {"shards": 1}}}, NS)
    await wait_for(lambda: kube.get_object(DEPLOY, "klaxon-eval-default-1", NS) is None)
    await wait_for(lambda: kube.get_object(PR, "klaxon-a", NS))

    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    used = set()
    for r in kube.log:
        if r.resource is None:
            continue  # discovery
        group = r.resource.rsplit("/", 2)[0] if r.resource.count("/") == 2 else ""
        plural = r.resource.rsplit("/", 1)[1] + (f"/{r.subresource}" if r.subresource else "")
        verb = verbs.get(r.method) or ("watch" if r.query.get("watch") == "true" else "get" if r.name else "list")
        used.add((group, plural, verb))
    rules = [{"apiGroups": [g], "resources": [p], "verbs": [v]} for g, p, v in sorted(used)]
    assert missing(OPERATOR_RULES, rules) == []


async def test_evaluator_rules_and_disabled_rules(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config(evaluator={"enabled": False}), NS)
    events_rule = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": "intrusion"},
        "spec": {"events": {"objectTypes": ["person"]}, "notify": {"channels": []}},
    }
    kube.create_object(AR, events_rule, NS)
    disabled = await wait_condition(kube, AR, "intrusion", "False", "EvaluatorDisabled")
    assert "disables it" in disabled["message"]
    status = kube.get_object(AR, "intrusion", NS)["status"]  # type: ignore[index]
    assert status["engine"] == "evaluator" and status["engineReasons"]
    assert condition(kube, AR, "intrusion", "Synced")["reason"] == "NothingToApply"
    assert kube.list_objects(DEPLOY, NS) == []  # evaluator disabled: no Deployment at all
    kube.patch_object(AC, "default", {"spec": {"evaluator": {"enabled": True}}}, NS)
    await wait_for(lambda: kube.get_object(DEPLOY, "klaxon-eval-default-0", NS))
    # enabled is not in effect: nobody takes its events until an evaluator holds shard 0's Lease
    waiting = await wait_condition(kube, AR, "intrusion", "False", "EvaluatorNotReady")
    assert "Lease team-a/klaxon-eval-default-0 is not held" in waiting["message"], waiting
    now = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {"holderIdentity": "eval-pod", "leaseDurationSeconds": 15, "renewTime": now}
    kube.create_object(
        "coordination.k8s.io/v1/leases", {"metadata": {"name": "klaxon-eval-default-0"}, "spec": lease}, NS
    )
    await wait_condition(kube, AR, "intrusion", "True", "Ready")

    # a prometheus-engine rule switched off loses its PrometheusRule, and gets it back
    kube.create_object(AR, rule("toggle"), NS)
    await wait_condition(kube, AR, "toggle", "True")
    kube.patch_object(AR, "toggle", {"spec": {"enabled": False}}, NS)
    await wait_for(lambda: kube.get_object(PR, "klaxon-toggle", NS) is None, message="PrometheusRule removed")
    kube.patch_object(AR, "toggle", {"spec": {"enabled": True}}, NS)
    await wait_for(lambda: kube.get_object(PR, "klaxon-toggle", NS), message="PrometheusRule back")


async def test_one_event_per_transition(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AR, rule("noisy"), NS)
    await wait_condition(kube, AR, "noisy", "False", "ConfigNotFound")
    kube.create_object(AC, alert_config(), NS)
    await wait_condition(kube, AR, "noisy", "True", "Ready")
    kube.patch_object(AR, "noisy", {"spec": {"severity": "critical"}}, NS)  # no transition
    await wait_for(lambda: condition(kube, AR, "noisy").get("observedGeneration") == 2)
    await asyncio.sleep(0.3)
    events = sorted(events_for(kube, "noisy"), key=lambda e: e["metadata"]["name"])
    reasons = sorted((e["type"], e["reason"]) for e in events)
    assert reasons == [("Normal", "Ready"), ("Warning", "ConfigNotFound")], reasons
    ready = next(e for e in events if e["reason"] == "Ready")
    assert "Ready=True" in ready["message"] and "Synced=True" in ready["message"]
    assert ready["involvedObject"]["uid"] == kube.get_object(AR, "noisy", NS)["metadata"]["uid"]  # type: ignore


async def test_metrics_count_reconciles_and_conditions(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = sample("klaxon_operator_reconciles_total", kind="AlertRule", trigger="create")
    kube.create_object(AC, alert_config(), NS)
    kube.create_object(AR, rule("counted"), NS)
    bad = rule("counted-bad")
    bad["spec"]["severity"] = "loud"
    kube.create_object(AR, bad, NS)
    await wait_condition(kube, AR, "counted", "True")
    await wait_condition(kube, AR, "counted-bad", "False", "InvalidSpec")
    assert sample("klaxon_operator_reconciles_total", kind="AlertRule", trigger="create") >= before + 2
    assert sample("klaxon_operator_objects", kind="AlertRule", ready="True", reason="Ready") >= 1
    assert sample("klaxon_operator_objects", kind="AlertRule", ready="False", reason="InvalidSpec") >= 1
    assert sample("klaxon_operator_reconcile_duration_seconds_count", kind="AlertRule") >= 2
    invalid = sample("klaxon_operator_objects", kind="AlertRule", ready="False", reason="InvalidSpec")
    kube.delete_object(AR, "counted-bad", NS)
    await wait_for(
        lambda: sample("klaxon_operator_objects", kind="AlertRule", ready="False", reason="InvalidSpec") == invalid - 1
    )


async def test_other_writers_status_is_kept(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    """The evaluator writes state and its own conditions into the same status: never clobbered."""
    kube.create_object(AC, alert_config(), NS)
    kube.create_object(AR, rule("shared"), NS)
    await wait_condition(kube, AR, "shared", "True")
    current = kube.get_object(AR, "shared", NS)["status"]  # type: ignore[index]
    evaluated = {"type": "Evaluated", "status": "True", "reason": "Evaluated", "message": "by shard 0"}
    kube.patch_object(
        AR,
        "shared",
        {"status": {"state": "Firing", "conditions": [*current["conditions"], evaluated]}},
        NS,
        subresource="status",
    )
    kube.patch_object(AR, "shared", {"spec": {"severity": "critical"}}, NS)
    await wait_for(lambda: condition(kube, AR, "shared").get("observedGeneration") == 2)
    status = kube.get_object(AR, "shared", NS)["status"]  # type: ignore[index]
    assert status["state"] == "Firing"
    assert condition(kube, AR, "shared", "Evaluated")["message"] == "by shard 0"
