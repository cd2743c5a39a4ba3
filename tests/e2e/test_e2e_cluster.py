"""Klaxon against a real API server, run the way a user runs it: ``klaxon operator`` and ``klaxon evaluator``
processes, the validating webhook registered on the server, ``kubectl`` for what users type.

The control plane (kube-apiserver + kube-controller-manager, ../shared/tools/kube) is the judge of
the CRDs' schemas and CEL cost, admission, owner references and garbage collection.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from e2e.procs import evaluator_process, kubectl, operator_process, registered_webhook, webhook_certs
from e2e.scenario import (
    ROOT,
    Body,
    KubeClient,
    Ref,
    apply_examples,
    check_cel_rejects,
    check_evaluated,
    check_examples,
    cond,
    eventually,
    install_crds,
    namespaces,
    rule_ref,
)
from support.prometheus import prometheus_server  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

KLAXON = "klaxon.dev/v1alpha1"


async def server_minor(kube: KubeClient) -> int:
    version = await kube.request("GET", "/version")
    return int(str(version.get("minor", "0")).rstrip("+"))


def columns(table: str) -> list[dict[str, str]]:
    """``kubectl get`` output as rows keyed by header (cells may be empty: cut at the header's offsets)."""
    header, *lines = table.splitlines()
    names = header.split()
    starts = [header.index(f" {n} ") + 1 if i else 0 for i, n in enumerate(names[:-1])] + [header.rindex(names[-1])]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines]


def unique(prefix: str = "klaxon-e2e") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def test_crds_install_with_kubectl_client_and_server_side(kubeconfig: str) -> None:
    """The README's first command, and its server-side variant (what Argo CD and Flux use)."""
    client_side = kubectl(kubeconfig, "apply", "-f", str(ROOT / "crds"))
    assert client_side.returncode == 0, client_side.stderr
    server_side = kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    assert server_side.returncode == 0, server_side.stderr
    for plural in ("alertrules", "alertconfigs", "notificationchannels"):
        assert f"{plural}.klaxon.dev" in client_side.stdout + server_side.stdout
    established = kubectl(
        kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
        "crd/alertrules.klaxon.dev", "crd/alertconfigs.klaxon.dev", "crd/notificationchannels.klaxon.dev",
    )  # fmt: skip
    assert established.returncode == 0, established.stderr


async def test_examples_reconcile_and_evaluators_put_them_in_effect(
    cluster: KubeClient,
    kubeconfig: str,
    tmp_path: Path,
    prometheus_server: Any,  # noqa: F811
) -> None:
    await install_crds(cluster)
    ns, other = unique(), unique()
    selector = {"klaxon-e2e-webhook": ns}
    evaluators = []
    with webhook_certs() as certs:
        async with (
            namespaces(cluster, ns, other, labels=selector),
            registered_webhook(cluster, ns, certs, selector),
            operator_process(kubeconfig, (ns, other), tmp_path, webhook=certs) as operator,
        ):
            try:
                await apply_examples(cluster, ns)  # through the webhook: every example is valid
                summary = await check_examples(cluster, ns, other, timeout=120)
                waiting = [n for n, e in summary["rules"].items() if e == "evaluator"]
                assert waiting, summary

                # Evaluators as the Deployments would run them (no kubelet here): one per shard.
                prom = prometheus_server()
                config = Ref(KLAXON, "alertconfigs", ns, "default")
                await cluster.merge_patch(config, {"spec": {"prometheus": {"url": prom.url}}})
                for name, shards in summary["configs"].items():
                    for i in range(shards):
                        evaluators.append(evaluator_process(kubeconfig, f"{ns}/{name}", (i, shards), tmp_path))
                messages = await check_evaluated(cluster, ns, waiting, timeout=120)
                assert set(messages.values()) == {"the rule is in effect"}, messages

                # kubectl, as users type it: wait, and the printer columns.
                waited = kubectl(kubeconfig, "wait", "--for=condition=Ready", "alertrules", "--all", "-n", ns,
                                 "--timeout=60s")  # fmt: skip
                assert waited.returncode == 0, waited.stderr
                table = kubectl(kubeconfig, "get", "alertrules", "-n", ns)
                assert table.returncode == 0, table.stderr
                rows = columns(table.stdout)
                assert waited.stdout.count("condition met") == len(rows) > 0, waited.stdout
                assert list(rows[0]) == ["NAME", "STATE", "SEVERITY", "LAST-EVAL", "READY", "AGE"], table.stdout
                assert {r["READY"] for r in rows} == {"True"}, table.stdout
                event_rules = {n for n in waiting if ((await cluster.get(rule_ref(ns, n))) or {})["spec"].get("events")}
                assert all(r["LAST-EVAL"] for r in rows if r["NAME"] not in event_rules), table.stdout
                wide = columns(kubectl(kubeconfig, "get", "alertrules", "-n", ns, "-o", "wide").stdout)
                assert list(wide[0])[-2:] == ["ENGINE", "REASON"], wide
                assert {r["ENGINE"] for r in wide} == {"prometheus", "evaluator"}, wide
                for short in ("ar", "ac", "nc"):
                    got = kubectl(kubeconfig, "get", short, "-n", ns, "-o", "name")
                    assert got.returncode == 0 and got.stdout.strip(), (short, got.stderr)

                # An evaluator goes away: rules it alone kept in effect say so (event rules follow
                # the Lease of shard 0 of their config; it expires 15 s after the kill).
                events_rule = sorted(event_rules)[0]
                config_of_rule = ((await cluster.get(rule_ref(ns, events_rule))) or {})["spec"].get("configRef") or {}
                taker = next(p for p in evaluators if p.name == f"evaluator-{config_of_rule.get('name', 'default')}-0")
                taker.kill()

                async def not_ready() -> Body | None:
                    body = await cluster.get(rule_ref(ns, events_rule))
                    return body if cond(body).get("reason") == "EvaluatorNotReady" else None

                body = await eventually(not_ready, 60, f"{events_rule} EvaluatorNotReady after its evaluator died")
                assert "not held" in cond(body)["message"], cond(body)
            except BaseException:
                print(operator.output()[-6000:])
                for proc in evaluators:
                    print(f"--- {proc.name}\n{proc.output()[-3000:]}")
                raise
            finally:
                for proc in evaluators:
                    proc.stop()
            assert "Traceback" not in operator.output(), operator.output()[-6000:]


async def test_edits_deletes_and_recreates_converge(cluster: KubeClient, kubeconfig: str, tmp_path: Path) -> None:
    await install_crds(cluster)
    ns = unique()
    config = {
        "apiVersion": KLAXON,
        "kind": "AlertConfig",
        "metadata": {"name": "default", "namespace": ns},
        "spec": {"prometheus": {"url": "http://prometheus.invalid:9090"}, "evaluator": {"shards": 2}},
    }
    rule = {
        "apiVersion": KLAXON,
        "kind": "AlertRule",
        "metadata": {"name": "cpu-high", "namespace": ns},
        "spec": {
            "query": {"metric": "cpu_usage", "window": "5m"},
            "condition": {"type": "threshold", "operator": "gt", "threshold": 90},
        },
    }
    rules_api = Ref("monitoring.coreos.com/v1", "prometheusrules", ns, None)
    async with namespaces(cluster, ns), operator_process(kubeconfig, (ns,), tmp_path) as operator:
        try:
            await cluster.create(config)
            first = await cluster.create(rule)

            async def applied(threshold: str, uid: str) -> Body | None:
                body = await cluster.get(rule_ref(ns, "cpu-high"))
                ref = ((body or {}).get("status") or {}).get("prometheusRuleRef") or {}
                pr = await cluster.get(Ref("monitoring.coreos.com/v1", "prometheusrules", ns, ref.get("name")))
                if (
                    body is None
                    or pr is None
                    or (body.get("status") or {}).get("observedGeneration") != body["metadata"]["generation"]
                ):
                    return None
                exprs = [r.get("expr", "") for g in pr["spec"]["groups"] for r in g["rules"]]
                owner = pr["metadata"]["ownerReferences"][0]["uid"]
                return pr if owner == uid and any(threshold in e for e in exprs) else None

            await eventually(lambda: applied("> 90", first["metadata"]["uid"]), 60, "PrometheusRule for threshold 90")

            # edit: the PrometheusRule follows the spec
            await cluster.merge_patch(rule_ref(ns, "cpu-high"), {"spec": {"condition": {"threshold": 75}}})
            await eventually(lambda: applied("> 75", first["metadata"]["uid"]), 60, "PrometheusRule for threshold 75")

            # delete: the garbage collector takes the PrometheusRule; re-create: a new one, new owner
            await cluster.delete(rule_ref(ns, "cpu-high"))

            async def gone() -> bool:
                return not await cluster.list(rules_api)

            await eventually(gone, 60, "PrometheusRule garbage-collected with its AlertRule")
            second = await cluster.create(rule)
            assert second["metadata"]["uid"] != first["metadata"]["uid"]
            await eventually(lambda: applied("> 90", second["metadata"]["uid"]), 60, "PrometheusRule after re-create")

            # the AlertConfig's evaluator objects: one Deployment per shard, then gone with the config
            children = [
                Ref("apps/v1", "deployments", ns, "klaxon-eval-default-0"),
                Ref("apps/v1", "deployments", ns, "klaxon-eval-default-1"),
                Ref("v1", "services", ns, "klaxon-eval-default"),
                Ref("v1", "serviceaccounts", ns, "klaxon-eval-default"),
                Ref("rbac.authorization.k8s.io/v1", "roles", ns, "klaxon-eval-default"),
                Ref("rbac.authorization.k8s.io/v1", "rolebindings", ns, "klaxon-eval-default"),
            ]

            async def present(want: bool) -> bool:
                found = [await cluster.get(c) is not None for c in children]
                return all(found) if want else not any(found)

            await eventually(lambda: present(True), 60, "evaluator objects of AlertConfig default")
            # a hand edit to the shard count is followed: shard 1 goes, shard 0 stays
            await cluster.merge_patch(
                Ref(KLAXON, "alertconfigs", ns, "default"), {"spec": {"evaluator": {"shards": 1}}}
            )

            async def one_shard() -> bool:
                return await cluster.get(children[1]) is None and await cluster.get(children[0]) is not None

            await eventually(one_shard, 60, "Deployment of shard 1 removed after shards: 1")
            await cluster.delete(Ref(KLAXON, "alertconfigs", ns, "default"))
            await eventually(lambda: present(False), 90, "evaluator objects garbage-collected with the AlertConfig")

            async def config_missing() -> Body | None:
                body = await cluster.get(rule_ref(ns, "cpu-high"))
                return body if cond(body).get("reason") == "ConfigNotFound" else None

            await eventually(config_missing, 60, "the rule reports its AlertConfig missing")
            await cluster.create(config)
            await eventually(lambda: present(True), 60, "evaluator objects back with a re-created AlertConfig")
        except BaseException:
            print(operator.output()[-6000:])
            raise
    assert "Traceback" not in operator.output(), operator.output()[-6000:]


async def test_crd_cel_rules_reject_without_the_webhook(cluster: KubeClient) -> None:
    await install_crds(cluster)
    if await server_minor(cluster) < 25:
        pytest.skip("CRD validation rules (CEL) are beta from Kubernetes 1.25; 1.24 drops them")
    ns = unique()
    async with namespaces(cluster, ns):
        message = await check_cel_rejects(cluster, ns)
    assert "set exactly one of query" in message
