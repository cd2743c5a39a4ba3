"""Least privilege, proven on a real API server: the operator and an evaluator run as processes
with the credentials of their ServiceAccounts, bound to exactly the RBAC the chart renders (the
operator's) and the operator creates (the evaluator's), and the whole scenario passes with zero
``403 Forbidden`` answers.

Counted on the client side by ``RecordingProxy`` (every request of both processes, kopf's and
Klaxon's, with its status) and in the processes' logs. (The API server's own request metrics do
not count authorization refusals, and its audit log would need a differently started cluster.)
Every permission the chart grants the operator is used by the scenario, except the few it holds
only so that it may grant them to evaluators (and the Lease without leader election).
The operator runs as the chart runs it (``klaxon operator`` with the Deployment's environment,
the webhook served with the chart's generated certificate, ``--resync 5`` so the resync and the
orphan collection run too); the evaluator runs with the arguments of the Deployment the operator
created, against a real Prometheus, notifying a local receiver through a channel whose URL and
HMAC key are in a Secret, for a rule in its own namespace and one in a granted namespace.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from e2e.rbac import RecordingProxy, grants, request_token, service_account_kubeconfig, upstream_of
from e2e.scenario import (
    KubeClient,
    apply_examples,
    check_examples,
    cond,
    eventually,
    get,
    install_crds,
    namespaces,
)
from klaxon.kube.client import KubeError, Ref
from support.chart import CHART, require_helm, run_helm
from support.prometheus import free_port, prometheus_server
from support.receiver import Receiver, receiver

__all__ = ["prometheus_server", "receiver"]  # fixtures

pytestmark = pytest.mark.e2e

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
PLURALS = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
           "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings"}
KLAXON = "klaxon.dev/v1alpha1"
MODES = ["cluster-wide-ha", "namespaced"]
#: Held by the operator only so that it may create the evaluator's Roles (the API server lets it
#: grant only what it holds itself); the evaluator uses them.
FOR_GRANTING = [("", "secrets", "get"), ("klaxon.dev", "alertconfigs", "get"),
                ("klaxon.dev", "alertrules", "get"), ("klaxon.dev", "notificationchannels", "get")]
#: The Lease of ha.enabled (the namespaced run has one replica, no election).
FOR_LEADER_ELECTION = [("coordination.k8s.io", "leases", v) for v in ("get", "create", "patch")]


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def chart_values(mode: str, watched: list[str]) -> dict[str, Any]:
    if mode == "cluster-wide-ha":  # leader election on: the Lease rules are used too
        return {"replicas": 2, "ha": {"enabled": True}}
    return {"watchNamespaces": watched}


def render(mode: str, release: str, namespace: str, watched: list[str], tmp: Path) -> list[dict[str, Any]]:
    import yaml

    out = run_helm(require_helm(), "template", release, str(CHART), "--namespace", namespace,
                   values=chart_values(mode, watched), tmp=tmp)
    return [d for d in yaml.safe_load_all(out) if d]


def ref_of(doc: dict[str, Any]) -> Ref:
    return Ref(doc["apiVersion"], PLURALS[doc["kind"]], doc["metadata"].get("namespace"), doc["metadata"]["name"])


@asynccontextmanager
async def process(name: str, argv: list[str], env: dict[str, str], log: Path) -> AsyncIterator[Any]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "klaxon.cli", *argv, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    print(f"--- {name} log (last lines) ---\n" + "\n".join(log.read_text().splitlines()[-15:]))


def operator_env(deployment: dict[str, Any], release: str, namespace: str, cert_dir: Path) -> dict[str, str]:
    """The operator container's environment as the chart renders it; ports on loopback."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update({
        "KLAXON_POD_NAME": f"{release}-0", "KLAXON_POD_NAMESPACE": namespace,
        "KLAXON_HEALTH_PORT": str(free_port()), "KLAXON_METRICS_PORT": str(free_port()),
        "KLAXON_WEBHOOK_PORT": str(free_port()), "KLAXON_WEBHOOK_CERT_DIR": str(cert_dir),
    })
    return {**os.environ, **env}


async def evaluator_objects(kube: KubeClient, ns: str, other: str, prom_url: str, hook_url: str) -> None:
    await kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-creds", "namespace": ns},
                       "data": {"url": b64(hook_url), "hmac": b64("hmac-" + secrets.token_hex(8))}})
    await kube.create({
        "apiVersion": KLAXON, "kind": "AlertConfig", "metadata": {"name": "lp", "namespace": ns},
        "spec": {"prometheus": {"url": prom_url}, "defaults": {"channels": ["hook"]},
                 "allowedNamespaces": [other]}})
    await kube.create({
        "apiVersion": KLAXON, "kind": "NotificationChannel", "metadata": {"name": "hook", "namespace": ns},
        "spec": {"type": "webhook", "webhook": {"urlSecret": {"name": "hook-creds", "key": "url"},
                                                "hmacSecret": {"name": "hook-creds", "key": "hmac"}}}})
    for where in (ns, other):
        await kube.create({
            "apiVersion": KLAXON, "kind": "AlertRule", "metadata": {"name": "always-hot", "namespace": where},
            "spec": {"configRef": {"name": "lp", "namespace": ns}, "severity": "warning",
                     "query": {"expr": "vector(95)"}, "condition": {"operator": "gt", "threshold": 80},
                     "evaluation": {"engine": "evaluator", "interval": "10s"},
                     **({"notify": {"channels": []}} if where == other else {})}})


async def run_scenario(cluster: KubeClient, kubeconfig: str, mode: str, tmp: Path, prom_url: str,
                       rec: Receiver) -> dict[str, Any]:
    await install_crds(cluster)
    suffix = secrets.token_hex(3)
    op_ns, ns, other, release = f"klaxon-lp-{suffix}", f"klaxon-lp-{suffix}-a", f"klaxon-lp-{suffix}-b", f"lp{suffix}"
    docs = render(mode, release, op_ns, [ns, other], tmp)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (tls,) = [d for d in docs if d["kind"] == "Secret"]
    cert_dir = tmp / "webhook-tls"
    cert_dir.mkdir()
    for key in ("tls.crt", "tls.key"):
        (cert_dir / key).write_bytes(base64.b64decode(tls["data"][key]))
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    operator_sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    proxy = RecordingProxy(*upstream_of(kubeconfig))
    await proxy.start()
    created: list[Ref] = []
    try:
        async with namespaces(cluster, op_ns, ns, other):
            for doc in rbac:
                await cluster.create(doc)
                created.append(ref_of(doc))
            token = await request_token(cluster, op_ns, operator_sa)
            proxy.name(token, "operator")
            op_kcfg = service_account_kubeconfig(tmp / "operator.kubeconfig", proxy.url, token, "operator")
            env = operator_env(deployment, release, op_ns, cert_dir)
            async with process("operator", ["operator", "--kubeconfig", str(op_kcfg), "--resync", "5"], env,
                               tmp / "operator.log"):
                await apply_examples(cluster, ns)
                summary = await check_examples(cluster, ns, other, timeout=120)
                summary["evaluator"] = await run_evaluator(cluster, proxy, ns, other, tmp, prom_url, rec)
                summary["churn"] = await churn(cluster, ns, other)
                await asyncio.sleep(6)  # one more resync (and orphan collection) under watch
    finally:
        for ref in created:
            if ref.namespace is None:
                with suppress(KubeError):
                    await cluster.delete(ref)
        await proxy.stop()
    summary["logs"] = {name: (tmp / f"{name}.log").read_text() for name in ("operator", "evaluator")}
    summary["proxy"] = proxy
    summary["rbac"] = rbac
    summary["namespaces"] = (op_ns, ns, other)
    return summary


async def run_evaluator(cluster: KubeClient, proxy: RecordingProxy, ns: str, other: str, tmp: Path,
                        prom_url: str, rec: Receiver) -> dict[str, Any]:
    await evaluator_objects(cluster, ns, other, prom_url, f"{rec.url}/hook")

    async def deployment() -> dict[str, Any] | None:
        config = await get(cluster, KLAXON, "alertconfigs", ns, "lp")
        if ((config or {}).get("status") or {}).get("grantedNamespaces") != [other]:
            return None
        return await get(cluster, "apps/v1", "deployments", ns, "klaxon-eval-lp-0")

    dep = await eventually(deployment, 60, "the evaluator Deployment and its grant")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    args = list(container["args"])
    args[args.index("--metrics-port") + 1] = str(free_port())
    args[args.index("--state-dir") + 1] = str(tmp / "state")
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    token = await request_token(cluster, ns, sa)
    proxy.name(token, "evaluator")
    kcfg = service_account_kubeconfig(tmp / "evaluator.kubeconfig", proxy.url, token, "evaluator")
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if "value" in e},
           "POD_NAME": "klaxon-eval-lp-0-test", "POD_NAMESPACE": ns}

    async def firing(where: str) -> dict[str, Any] | None:
        rule = await get(cluster, KLAXON, "alertrules", where, "always-hot")
        status = (rule or {}).get("status") or {}
        return status if status.get("state") == "Firing" and status.get("lastEvaluation") else None

    async with process("evaluator", [*args, "--kubeconfig", str(kcfg)], env, tmp / "evaluator.log"):
        own = await eventually(lambda: firing(ns), 90, "the evaluator's rule Firing in its namespace")
        granted = await eventually(lambda: firing(other), 60, "the rule in the granted namespace Firing")
        hits = await eventually(lambda: _firing_hits(rec), 60, "a firing notification at the receiver")

        async def delivered() -> dict[str, Any] | None:
            channel = await get(cluster, KLAXON, "notificationchannels", ns, "hook")
            status = (channel or {}).get("status") or {}
            return status if status.get("deliveredCount") else None

        channel = await eventually(delivered, 60, "the channel's delivery status")
    return {"rule": own["state"], "granted_rule": granted["state"], "notifications": len(hits),
            "delivered": channel["deliveredCount"], "ready": cond(await get(cluster, KLAXON, "alertrules", ns,
                                                                          "always-hot")).get("reason")}


async def churn(kube: KubeClient, ns: str, other: str) -> list[str]:
    """What the operator's write rights are for beyond creating: undo hand edits (patch), delete
    what is no longer wanted (an engine switch, an evaluator switched off, a grant withdrawn)."""
    done = []
    part_of = "app.kubernetes.io/part-of"
    for api_version, plural, name in (
        ("apps/v1", "deployments", "klaxon-eval-lp-0"),
        ("v1", "serviceaccounts", "klaxon-eval-lp"),
        ("v1", "services", "klaxon-eval-lp"),
        ("rbac.authorization.k8s.io/v1", "rolebindings", "klaxon-eval-lp"),
    ):
        ref = Ref(api_version, plural, ns, name)
        await kube.merge_patch(ref, {"metadata": {"labels": {part_of: "someone-else"}}})

        async def restored(ref: Ref = ref) -> bool:
            return ((await kube.get(ref) or {}).get("metadata", {}).get("labels") or {}).get(part_of) == "klaxon"

        await eventually(restored, 60, f"{plural}/{name} restored after a hand edit")
        done.append(f"{plural} edit undone")
    prs = await kube.list(Ref("monitoring.coreos.com/v1", "prometheusrules", ns),
                          label_selector="app.kubernetes.io/managed-by=klaxon")
    engines = {r["metadata"]["name"]: (r.get("status") or {}).get("engine")
               for r in await kube.list(Ref(KLAXON, "alertrules", ns))}
    # a rule Prometheus evaluates (an evaluator rule may still own recording rules for its baseline)
    pr = next(p for p in prs if engines.get(p["metadata"]["ownerReferences"][0]["name"]) == "prometheus")
    pr_ref = Ref("monitoring.coreos.com/v1", "prometheusrules", ns, pr["metadata"]["name"])
    await kube.merge_patch(pr_ref, {"spec": {"groups": []}})

    async def pr_restored() -> bool:
        return bool(((await kube.get(pr_ref) or {}).get("spec") or {}).get("groups"))

    await eventually(pr_restored, 60, "PrometheusRule restored after a hand edit")
    (owner,) = pr["metadata"]["ownerReferences"]
    moved = {"spec": {"evaluation": {"engine": "evaluator"}}}
    await kube.merge_patch(Ref(KLAXON, "alertrules", ns, owner["name"]), moved)

    async def pr_gone() -> bool:
        return await kube.get(pr_ref) is None

    try:
        await eventually(pr_gone, 60, "the PrometheusRule of a rule moved to the evaluator deleted")
    except AssertionError as exc:
        rule = await kube.get(Ref(KLAXON, "alertrules", ns, owner["name"]))
        raise AssertionError(f"{exc}; the rule: {(rule or {}).get('spec')} {(rule or {}).get('status')}") from None
    done.append("PrometheusRule edit undone, then deleted on an engine switch")
    config = Ref(KLAXON, "alertconfigs", ns, "lp")
    await kube.merge_patch(config, {"spec": {"allowedNamespaces": [], "evaluator": {"enabled": False}}})
    rbac = "rbac.authorization.k8s.io/v1"
    gone = [Ref("apps/v1", "deployments", ns, "klaxon-eval-lp-0"), Ref("v1", "serviceaccounts", ns, "klaxon-eval-lp"),
            Ref("v1", "services", ns, "klaxon-eval-lp"), Ref(rbac, "roles", ns, "klaxon-eval-lp"),
            Ref(rbac, "rolebindings", ns, "klaxon-eval-lp"), Ref(rbac, "roles", other, f"klaxon-eval.{ns}.lp"),
            Ref(rbac, "rolebindings", other, f"klaxon-eval.{ns}.lp")]

    async def all_gone() -> bool:
        return all([await kube.get(ref) is None for ref in gone])

    await eventually(all_gone, 60, "the evaluator's objects and grants deleted once it is switched off")
    done.append("evaluator switched off: its objects and grants deleted")
    return done


async def _firing_hits(rec: Receiver) -> list[Any]:
    return [h for h in rec.accepted if h.json.get("kind") == "firing"]


def rules_of(rbac: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for d in rbac if d["kind"] == kind for r in d.get("rules") or []]


@pytest.mark.parametrize("mode", MODES)
async def test_operator_and_evaluator_run_as_service_accounts_without_a_single_forbidden(
    cluster: KubeClient, kubeconfig: str, tmp_path: Path, prometheus_server: Any, receiver: Receiver, mode: str
) -> None:
    async def none_terminating() -> bool:
        # A cluster-wide operator sees the namespaces earlier tests are still deleting, and the API
        # server answers writes there with 403 ("being terminated"): not an RBAC refusal, so wait.
        listed = await cluster.list(Ref("v1", "namespaces", None))
        return not [n for n in listed if (n.get("status") or {}).get("phase") == "Terminating"]

    await eventually(none_terminating, 120, "namespaces of earlier tests to finish terminating")
    prom = prometheus_server()
    summary = await run_scenario(cluster, kubeconfig, mode, tmp_path, prom.url, receiver)
    proxy: RecordingProxy = summary.pop("proxy")
    rbac = summary.pop("rbac")
    _, ns, other = summary.pop("namespaces")
    by_who: dict[str, int] = {}
    for call in proxy.calls:
        by_who[call.who] = by_who.get(call.who, 0) + 1
    forbidden = proxy.forbidden()
    logs = summary.pop("logs")
    print(f"{mode}: requests {by_who}, 403 answers {len(forbidden)}; {summary}")
    for call in forbidden:
        print(f"  403 {call.who} {call.method} {call.path}?{call.query}")
    assert set(by_who) == {"operator", "evaluator"}, by_who
    assert by_who["evaluator"] > 0 and by_who["operator"] > 0
    assert not forbidden
    for name, text in logs.items():  # what kopf and Klaxon report when a request is refused
        assert not re.search("forbidden", text, re.IGNORECASE), f"{name} log mentions a refusal"
    assert not [c for c in proxy.calls if c.status == 401], "a token was refused"

    # What the operator's chart RBAC grants and the scenario never used: printed for the report.
    held = rules_of(rbac, "ClusterRole") + rules_of(rbac, "Role")
    used = proxy.used("operator")
    assert all(grants(held, p, None) for p in used)
    granted = {(g, r, v) for rule in held for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    unused = sorted(granted - {(g, r, v) for g, r, v, _ in used})
    justified = set(FOR_GRANTING) | (set() if mode == "cluster-wide-ha" else set(FOR_LEADER_ELECTION))
    assert set(unused) <= justified, f"granted to the operator, used by no part of the scenario: {unused}"
    print(f"{mode}: operator permissions used: {sorted({(g, r, v) for g, r, v, _ in used})}")
    print(f"{mode}: operator permissions granted, not used: {unused}")
    print(f"{mode}: evaluator permissions used: {sorted(proxy.used('evaluator'))}")
    # The evaluator never reads cluster-wide and never leaves its two namespaces.
    assert {p[3] for p in proxy.used("evaluator")} <= {ns, other}
