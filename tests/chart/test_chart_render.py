"""The chart, rendered by the real helm binary and checked against Kubernetes' own schemas."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from klaxon.api.validation import parse_object
from support.chart import CHART, MIN_KUBE, REPO, find, run_helm

# Custom resources: kubernetes-validate only knows the built-in kinds. Their own schemas are
# checked elsewhere (the AlertConfig through klaxon's models below; cert-manager and
# prometheus-operator objects are theirs).
CUSTOM_GROUPS = {"klaxon.dev", "cert-manager.io", "monitoring.coreos.com"}

CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIuLi4KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # Everything optional switched on, HA with three replicas.
    "ha-full": {
        "replicas": 3,
        "ha": {"enabled": True},
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "regcred"}],
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                    "evaluatorPodMonitor": {"enabled": True}},
        "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.1/32"],
                          "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                              "kubernetes.io/metadata.name": "monitoring"}}}]},
        "pdb": {"maxUnavailable": None, "minAvailable": 2},
        "dashboards": {"enabled": True, "annotations": {"grafana_folder": "Klaxon"}},
        "defaultAlertConfig": {"enabled": True, "spec": {
            "prometheus": {"url": "http://prometheus-operated.monitoring.svc:9090"},
            "prometheusRule": {"labels": {"release": "kube-prometheus-stack"}},
            "defaults": {"interval": "1m"}}},
        "webhook": {"failurePolicy": "Ignore",
                    "certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}},
    },
    # Watching two namespaces, certificate from an existing Secret, own ServiceAccount.
    "namespaced-secret": {
        "watchNamespaces": ["team-a", "team-b"],
        "webhook": {"certManager": {"enabled": False}, "existingSecret": "klaxon-tls", "caBundle": CA},
        "serviceAccount": {"create": False, "name": "klaxon"},
        "defaultAlertConfig": {"enabled": True, "namespace": "team-a"},
        "logFormat": "json",
        "logLevel": "debug",
    },
    # The smallest footprint: no webhook, no metrics, no PDB.
    "minimal": {
        "webhook": {"enabled": False},
        "metrics": {"enabled": False},
        "pdb": {"enabled": False},
        "probes": {"liveness": False, "readiness": False},
    },
}


@pytest.fixture(params=list(SCENARIOS), scope="function")
def scenario(request: pytest.FixtureRequest, render) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(SCENARIOS[request.param], crds=True)


def test_lint_strict(helm: Path) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "defaults"])
def test_lint_strict_with_scenario_values(helm: Path, tmp_path: Path, name: str) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART), values=SCENARIOS[name], tmp=tmp_path)
    assert "0 chart(s) failed" in out


def test_scenarios_validate_against_kubernetes_schemas(scenario, validators) -> None:
    name, docs = scenario
    builtin = [d for d in docs if d["apiVersion"].split("/")[0] not in CUSTOM_GROUPS]
    skipped = {d["kind"] for d in docs if d["apiVersion"].split("/")[0] in CUSTOM_GROUPS}
    assert {"Deployment", "CustomResourceDefinition"} <= {d["kind"] for d in builtin}
    if name == "ha-full":
        assert skipped == {"AlertConfig", "Certificate", "ServiceMonitor", "PodMonitor"}
    for version, validate in validators.items():
        results = validate(builtin)
        problems = [f"{d['kind']}/{d['metadata']['name']}: {r['error']}"
                    for d, r in zip(builtin, results, strict=True)
                    if not r["ok"]]
        assert not problems, f"[{name}] Kubernetes {version}:\n" + "\n".join(problems)
        assert {r["version"] for r in results if r["ok"]} == {version}, "validated against another version"


def test_validation_can_fail(validators) -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "three", "selector": {}, "template": {}}}
    for version, validate in validators.items():
        [result] = validate([bad])
        assert not result["ok"] and "replicas" in result["error"], (version, result)


def test_the_old_version_is_really_the_minimum(validators) -> None:
    # ValidatingAdmissionPolicy went GA (admissionregistration.k8s.io/v1) in 1.30: unknown to 1.28.
    doc = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
           "metadata": {"name": "x"}, "spec": {}}
    [result] = validators[MIN_KUBE]([doc])
    assert not result["ok"] and "SchemaNotFound" in result["error"], result


def test_chart_kube_version_is_the_minimum_the_crds_need() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={MIN_KUBE}.0-0"


def test_default_alertconfig_is_valid_for_klaxon(scenario) -> None:
    name, docs = scenario
    configs = [d for d in docs if d["kind"] == "AlertConfig"]
    assert bool(configs) == bool(SCENARIOS[name].get("defaultAlertConfig", {}).get("enabled"))
    for doc in configs:
        parsed = parse_object(doc)
        assert not parsed.problems, [str(p) for p in parsed.problems]


def test_crds_in_chart_are_byte_identical_to_crds_dir() -> None:
    ours = sorted(p.name for p in (CHART / "crds").iterdir())
    theirs = sorted(p.name for p in (REPO / "crds").iterdir())
    assert ours == theirs
    for name in ours:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), name


def test_rendered_crds_are_the_files(render) -> None:
    crds = [d for d in render(crds=True) if d["kind"] == "CustomResourceDefinition"]
    files = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    def by_name(d: dict[str, Any]) -> str:
        return d["metadata"]["name"]

    assert sorted(crds, key=by_name) == sorted(files, key=by_name)


def _operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_secure_defaults(render) -> None:
    docs = render()
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    sc = _operator_container(docs)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert "hostNetwork" not in pod and "hostPID" not in pod
    mounts = {m["mountPath"] for m in _operator_container(docs)["volumeMounts"]}
    assert "/tmp" in mounts, "a read-only root filesystem needs a writable /tmp"


def test_operator_command_and_image(render) -> None:
    container = _operator_container(render())
    assert container["command"] == ["klaxon"] and container["args"] == ["operator"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container["image"].endswith(":" + chart["appVersion"]), "image.tag defaults to appVersion"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KLAXON_EVALUATOR_IMAGE"] == container["image"]
    digest = _operator_container(render(SCENARIOS["ha-full"]))["image"]
    assert digest.endswith("@sha256:" + "a" * 64)


VERSIONED = {"helm.sh/chart", "app.kubernetes.io/version"}


def _selectors(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    out = []
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] in {"Deployment", "PodDisruptionBudget", "ServiceMonitor", "PodMonitor"}:
            out.append((d["kind"], spec["selector"]["matchLabels"]))
        elif d["kind"] == "Service":
            out.append((d["kind"], spec["selector"]))
        elif d["kind"] == "NetworkPolicy":
            out.append((d["kind"], spec["podSelector"]["matchLabels"]))
    return out


def test_selectors_carry_no_version_and_match_the_pods(scenario) -> None:
    _, docs = scenario
    pod_labels = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service_labels = {}
    services = [d for d in docs if d["kind"] == "Service"]
    if services:
        service_labels = services[0]["metadata"]["labels"]
    for kind, selector in _selectors(docs):
        assert not VERSIONED & set(selector), f"{kind} selector holds a version label: {selector}"
        if kind == "ServiceMonitor":
            assert selector.items() <= service_labels.items(), "ServiceMonitor does not select the Service"
        elif kind != "PodMonitor":
            assert selector.items() <= pod_labels.items(), f"{kind} does not select the operator pods"


def test_webhook_wiring(render) -> None:
    docs = render()
    vwc = find(docs, "ValidatingWebhookConfiguration")
    service = find(docs, "Service")
    container = _operator_container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["webhook"] == 9443
    [svc_port] = [p for p in service["spec"]["ports"] if p["name"] == "webhook"]
    assert svc_port["port"] == 443 and svc_port["targetPort"] == "webhook"
    kinds = set()
    for hook in vwc["webhooks"]:
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        ref = hook["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["port"]) == (
            service["metadata"]["name"], "klaxon-system", 443)
        [rule] = hook["rules"]
        assert rule["apiGroups"] == ["klaxon.dev"] and rule["operations"] == ["CREATE", "UPDATE"]
        kinds.update(rule["resources"])
        assert ref["path"] == "/validate-" + rule["resources"][0][:-1]
    assert kinds == {"alertrules", "alertconfigs", "notificationchannels"}
    # Defaults: Helm generates the certificate; no cert-manager kind is needed.
    assert not [d for d in docs if d["apiVersion"].startswith("cert-manager.io/")]
    assert "annotations" not in vwc["metadata"]
    secret = find(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    volumes = {v["name"]: v for v in find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert {h["clientConfig"]["caBundle"] for h in vwc["webhooks"]} == {secret["data"]["ca.crt"]}


def _pem(tmp: Path, name: str, b64: str) -> Path:
    path = tmp / name
    path.write_bytes(base64.b64decode(b64))
    return path


def test_generated_certificate_is_valid_for_the_service(render, tmp_path: Path) -> None:
    docs = render(namespace="mon", release="alerts")
    secret = find(docs, "Secret")
    ca = _pem(tmp_path, "ca.crt", secret["data"]["ca.crt"])
    crt = _pem(tmp_path, "tls.crt", secret["data"]["tls.crt"])
    key = _pem(tmp_path, "tls.key", secret["data"]["tls.key"])
    host = f"{find(docs, 'Service')['metadata']['name']}.mon.svc"
    assert host == "alerts-klaxon.mon.svc"

    def verify(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["openssl", "verify", "-CAfile", str(ca), "-purpose", "sslserver",
                               "-verify_hostname", name, str(crt)], capture_output=True, text=True)

    for name in (host, f"{host}.cluster.local"):
        assert verify(name).returncode == 0, verify(name).stderr
    assert verify("alerts-klaxon.other.svc").returncode != 0, "the check accepts any name"
    modulus = [subprocess.run(["openssl", kind, "-noout", "-modulus", "-in", str(path)], capture_output=True,
                              text=True, check=True).stdout for kind, path in (("x509", crt), ("rsa", key))]
    assert modulus[0] == modulus[1], "tls.key does not belong to tls.crt"
    # `helm template` sees no cluster: each render generates afresh (upgrades reuse via lookup,
    # which tests/e2e/test_helm.py proves on a real cluster).
    assert find(render(namespace="mon", release="alerts"), "Secret")["data"]["ca.crt"] != secret["data"]["ca.crt"]


def test_cert_manager_issues_the_certificate(render) -> None:
    docs = render({"webhook": {"certManager": {"enabled": True}}})
    vwc = find(docs, "ValidatingWebhookConfiguration")
    cert = find(docs, "Certificate")
    ns, name = vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    assert (ns, name) == (cert["metadata"]["namespace"], cert["metadata"]["name"])
    assert not any("caBundle" in h["clientConfig"] for h in vwc["webhooks"]), "the CA injector fills it in"
    assert not [d for d in docs if d["kind"] == "Secret"], "cert-manager writes the Secret"
    volumes = {v["name"]: v for v in find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == cert["spec"]["secretName"]
    service = find(docs, "Service")
    assert f"{service['metadata']['name']}.klaxon-system.svc" in cert["spec"]["dnsNames"]
    assert cert["spec"]["issuerRef"]["name"] == find(docs, "Issuer")["metadata"]["name"]


def test_webhook_existing_secret_and_namespaces(render) -> None:
    docs = render(SCENARIOS["namespaced-secret"])
    assert not [d for d in docs if d["kind"] in {"Certificate", "Issuer", "Secret"}]
    vwc = find(docs, "ValidatingWebhookConfiguration")
    assert "annotations" not in vwc["metadata"]
    for hook in vwc["webhooks"]:
        assert hook["clientConfig"]["caBundle"] == CA
        assert hook["namespaceSelector"]["matchExpressions"] == [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]
    volumes = {v["name"]: v for v in find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == "klaxon-tls"
    env = {e["name"]: e.get("value") for e in _operator_container(docs)["env"]}
    assert env["KLAXON_NAMESPACES"] == "team-a,team-b"
    assert find(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "klaxon"
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]


def test_failure_policy_and_issuer_are_configurable(render) -> None:
    docs = render(SCENARIOS["ha-full"])
    hooks = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert {h["failurePolicy"] for h in hooks} == {"Ignore"}
    assert find(docs, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    assert not [d for d in docs if d["kind"] == "Issuer"]


def test_ha(render) -> None:
    docs = render(SCENARIOS["ha-full"])
    deploy = find(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e.get("value") for e in _operator_container(docs)["env"]}
    assert env["KLAXON_LEADER_ELECTION"] == "true" and env["KLAXON_LEASE_NAME"] == "klaxon"
    anti = deploy["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert find(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2, "selector": deploy["spec"]["selector"]}
    single = find(render(), "Deployment")
    assert single["spec"]["strategy"]["type"] == "Recreate", "one leaderless replica must not overlap"
    assert "affinity" not in single["spec"]["template"]["spec"]


def test_minimal(render) -> None:
    docs = render(SCENARIOS["minimal"])
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ValidatingWebhookConfiguration", "Service", "PodDisruptionBudget", "Certificate"}
    container = _operator_container(docs)
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert "livenessProbe" not in container and "readinessProbe" not in container
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KLAXON_WEBHOOK_ENABLED"] == "false" and env["KLAXON_METRICS_PORT"] == "0"


def test_network_policy(render) -> None:
    policy = find(render(SCENARIOS["ha-full"]), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")}
    api_rule = next(r for r in policy["egress"] if any(p["port"] == 443 for p in r["ports"]))
    assert api_rule["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    metrics_rule = next(r for r in policy["ingress"] if r["ports"][0]["port"] == "metrics")
    assert metrics_rule["from"][0]["namespaceSelector"]


def test_dashboard_configmap_is_the_canonical_file(render) -> None:
    docs = render(SCENARIOS["ha-full"])
    cm = find(docs, "ConfigMap")
    canonical = (CHART / "dashboards" / "klaxon.json").read_text()
    assert cm["data"]["klaxon.json"] == canonical.rstrip("\n")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert not [d for d in render() if d["kind"] == "ConfigMap"], "dashboards are off by default"


def test_service_monitor(render) -> None:
    docs = render(SCENARIOS["ha-full"])
    sm = find(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    pm = find(docs, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "evaluator"


def test_notes_render(helm: Path, tmp_path: Path) -> None:
    out = run_helm(helm, "install", "klaxon", str(CHART), "--dry-run=client", "--namespace", "klaxon-system",
                   values=SCENARIOS["ha-full"], tmp=tmp_path)
    notes = out.split("NOTES:", 1)[1]
    assert "kubectl -n klaxon-system rollout status deployment/klaxon" in notes
    assert "klaxon-system/default" in notes


def _value_keys_without_comment(text: str) -> list[str]:
    missing = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if not m:
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j < 0 or not lines[j].strip().startswith("#"):
            missing.append(f"line {i + 1}: {line.strip()}")
    return missing


def test_every_value_has_a_comment() -> None:
    text = (CHART / "values.yaml").read_text()
    assert not _value_keys_without_comment(text)
    assert _value_keys_without_comment("a: 1\n# b\nb: 2\n") == ["line 1: a: 1"]


def test_every_value_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, sch: dict[str, Any], path: str) -> list[str]:
        if not isinstance(node, dict) or "properties" not in sch:
            return []
        out = []
        for key, val in node.items():
            if key not in sch["properties"]:
                out.append(f"{path}{key}")
            else:
                out += walk(val, sch["properties"][key], f"{path}{key}.")
        return out

    assert not walk(values, schema, "")


def test_deploy_grafana_copy_is_identical() -> None:
    copies = list((REPO / "deploy" / "grafana").glob("*.json"))
    assert copies
    canonical = (CHART / "dashboards" / "klaxon.json").read_bytes()
    for copy in copies:
        assert copy.read_bytes() == canonical, f"{copy} differs from charts/klaxon/dashboards/klaxon.json"


def test_dashboard_uses_a_datasource_variable_and_documented_metrics() -> None:
    dash = json.loads((CHART / "dashboards" / "klaxon.json").read_text())
    assert dash["uid"] and dash["title"]
    assert any(v["type"] == "datasource" for v in dash["templating"]["list"])
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
    readme = (CHART / "README.md").read_text()
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"klaxon_\w+", e)}
    undocumented = sorted(m for m in used if f"`{m}`" not in readme)
    assert not undocumented, f"metrics used by the dashboard but not in the chart README: {undocumented}"


def test_helm_package(helm: Path, tmp_path: Path) -> None:
    run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    [archive] = tmp_path.glob("klaxon-*.tgz")
    listing = subprocess.run(["tar", "tzf", str(archive)], capture_output=True, text=True, check=True).stdout
    assert "klaxon/crds/klaxon.dev_alertrules.yaml" in listing
    assert "klaxon/dashboards/klaxon.json" in listing
    assert "klaxon/values.schema.json" in listing
