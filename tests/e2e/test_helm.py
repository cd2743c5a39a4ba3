"""The chart, installed by the real ``helm`` into a real API server without cert-manager.

``helm install`` with default values (no ``--wait``: there is no kubelet, pods never run), every
object of the release exists as the API server admitted it, the webhook's generated certificate
is valid for the Service and signed by the caBundle; ``helm upgrade`` keeps certificate and
caBundle, and makes new ones once the Secret is deleted (rotation); ``helm uninstall`` removes
everything but the CRDs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.scenario import KubeClient, eventually
from klaxon.kube.client import KubeError, Ref
from support.chart import CHART, require_helm, run_helm

pytestmark = pytest.mark.e2e

CRD_NAMES = ["alertconfigs.klaxon.dev", "alertrules.klaxon.dev", "notificationchannels.klaxon.dev"]
CRDS = "apiextensions.k8s.io/v1"
PLURALS = {
    "ServiceAccount": "serviceaccounts", "Secret": "secrets", "Service": "services",
    "Deployment": "deployments", "PodDisruptionBudget": "poddisruptionbudgets",
    "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles", "RoleBinding": "rolebindings",
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
}


def helm(kubeconfig: str, *args: str, show: bool = True) -> str:
    out = run_helm(require_helm(), *args, "--kubeconfig", kubeconfig)
    if show:
        print(f"$ helm {' '.join(args)}\n{out}")
    return out


def manifest(kubeconfig: str, release: str, ns: str) -> list[dict[str, Any]]:
    out = helm(kubeconfig, "get", "manifest", release, "-n", ns, show=False)
    return [d for d in yaml.safe_load_all(out) if d]


def ref_of(doc: dict[str, Any]) -> Ref:
    kind = doc["kind"]
    assert kind in PLURALS, f"the release holds a {kind}: add it to PLURALS"
    return Ref(doc["apiVersion"], PLURALS[kind], doc["metadata"].get("namespace"), doc["metadata"]["name"])


def find_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def verify_cert(tmp: Path, secret: dict[str, Any], host: str) -> None:
    for key in ("ca.crt", "tls.crt"):
        (tmp / key).write_bytes(base64.b64decode(secret["data"][key]))
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "ca.crt"), "-purpose", "sslserver",
                           "-verify_hostname", host, str(tmp / "tls.crt")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


async def test_helm_install_upgrade_uninstall_without_cert_manager(
    cluster: KubeClient, kubeconfig: str, tmp_path: Path
) -> None:
    groups = await cluster.request("GET", "/apis")
    assert "cert-manager.io" not in {g["name"] for g in groups["groups"]}, "this test wants a cluster without it"
    crds_before = {n for n in CRD_NAMES if await cluster.get(Ref(CRDS, "customresourcedefinitions", None, n))}
    suffix = secrets.token_hex(3)
    ns, release = f"klaxon-helm-{suffix}", f"kx{suffix}"
    fullname = f"{release}-klaxon"
    installed = False
    try:
        out = helm(kubeconfig, "install", release, str(CHART), "-n", ns, "--create-namespace")
        installed = True
        assert "STATUS: deployed" in out and "Helm generated its certificate" in out
        docs = manifest(kubeconfig, release, ns)
        kinds = sorted(d["kind"] for d in docs)
        assert kinds == sorted([
            "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Secret", "Service",
            "ServiceAccount", "ValidatingWebhookConfiguration"]), kinds
        live = {d["kind"]: await cluster.get(ref_of(d)) for d in docs}
        assert all(live.values()), [k for k, v in live.items() if v is None]
        for name in CRD_NAMES:  # created by this install, or there already (helm skips those)
            crd = await cluster.get(Ref(CRDS, "customresourcedefinitions", None, name))
            assert crd is not None and any(
                c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
        secret, vwc = live["Secret"], live["ValidatingWebhookConfiguration"]
        assert secret["metadata"]["name"] == f"{fullname}-webhook-tls"
        assert {h["clientConfig"]["caBundle"] for h in vwc["webhooks"]} == {secret["data"]["ca.crt"]}
        assert {h["clientConfig"]["service"]["name"] for h in vwc["webhooks"]} == {fullname}
        verify_cert(tmp_path, secret, f"{fullname}.{ns}.svc")
        deployment = live["Deployment"]
        mounted = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert mounted["webhook-tls"]["secret"]["secretName"] == secret["metadata"]["name"]

        # Not exercised here: a write of a Klaxon kind would make the API server call the
        # webhook at <svc>.<ns>.svc, a name only cluster DNS knows (the lead's suite registers
        # one on loopback instead). The server's own admission of the configuration is the check.
        assert {h["failurePolicy"] for h in vwc["webhooks"]} == {"Fail"}

        out = helm(kubeconfig, "upgrade", release, str(CHART), "-n", ns, "--set", "logLevel=debug")
        assert "STATUS: deployed" in out and "REVISION: 2" in out
        after = {d["kind"]: await cluster.get(ref_of(d)) for d in manifest(kubeconfig, release, ns)}
        assert after["Secret"]["data"] == secret["data"], "the upgrade replaced the certificate"
        assert {h["clientConfig"]["caBundle"] for h in after["ValidatingWebhookConfiguration"]["webhooks"]} == {
            secret["data"]["ca.crt"]}
        env = {e["name"]: e.get("value") for e in
               after["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["KLAXON_LOG_LEVEL"] == "debug"
        history = json.loads(helm(kubeconfig, "history", release, "-n", ns, "-o", "json"))
        assert [h["status"] for h in history] == ["superseded", "deployed"]

        # Rotation as NOTES.txt tells it: delete the Secret, upgrade.
        await cluster.delete(ref_of(find_kind(docs, "Secret")))
        helm(kubeconfig, "upgrade", release, str(CHART), "-n", ns, "--reuse-values", show=False)
        rotated = {d["kind"]: await cluster.get(ref_of(d)) for d in manifest(kubeconfig, release, ns)}
        assert rotated["Secret"]["data"]["ca.crt"] != secret["data"]["ca.crt"]
        assert {h["clientConfig"]["caBundle"] for h in rotated["ValidatingWebhookConfiguration"]["webhooks"]} == {
            rotated["Secret"]["data"]["ca.crt"]}
        verify_cert(tmp_path, rotated["Secret"], f"{fullname}.{ns}.svc")

        out = helm(kubeconfig, "uninstall", release, "-n", ns)
        installed = False
        assert "uninstalled" in out

        async def all_gone() -> bool:
            return all([await cluster.get(ref_of(d)) is None for d in docs])

        await eventually(all_gone, 60, "every object of the release deleted")
        for name in CRD_NAMES:
            assert await cluster.get(Ref(CRDS, "customresourcedefinitions", None, name)), f"{name} deleted"
        print(f"CRDs there before the install: {sorted(crds_before)}; kept after uninstall: {CRD_NAMES}")
    finally:
        if installed:
            subprocess.run([str(require_helm()), "uninstall", release, "-n", ns, "--kubeconfig", kubeconfig],
                           capture_output=True)
        with contextlib.suppress(KubeError):
            await cluster.delete(Ref("v1", "namespaces", None, ns))
