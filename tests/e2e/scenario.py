"""The end-to-end scenario, written against Klaxon's own client so it runs on any API server.

``tests/e2e`` runs it against a real cluster (opt-in); ``tests/operator`` runs the very same
code against the kmock-based emulator, so the scenario itself is exercised on every test run.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]

from klaxon.kube.client import Body, KubeClient, KubeError, Ref  # noqa: E402

T = TypeVar("T")
CRD_FILES = [*sorted((ROOT / "crds").glob("*.yaml")), ROOT / "tests" / "data" / "prometheusrules-crd.yaml"]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRDS = Ref("apiextensions.k8s.io/v1", "customresourcedefinitions", None)


def load_docs(path: pathlib.Path) -> list[Body]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


async def eventually(probe: Callable[[], Awaitable[T]], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


async def install_crds(kube: KubeClient) -> list[str]:
    """Create missing CRDs (ours + prometheus-operator's PrometheusRule); wait until Established."""
    created = []
    for path in CRD_FILES:
        for crd in load_docs(path):
            name = crd["metadata"]["name"]
            ref = Ref("apiextensions.k8s.io/v1", "customresourcedefinitions", None, name)
            live = await kube.get(ref)
            if live is None:
                await kube.create(crd)
                created.append(name)
            elif live.get("spec") != crd["spec"] and live["spec"] != {**crd["spec"], **_server_defaults(live)}:
                # a long-lived cluster keeps the CRDs of an earlier run: bring them up to this checkout
                body = {**crd, "metadata": {**crd["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
                await kube.request("PUT", ref.path(), body=body)

            async def established(ref: Ref = ref) -> bool:
                body = await kube.get(ref) or {}
                conds = (body.get("status") or {}).get("conditions")
                return (conds is None and body != {}) or any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in conds or []
                )

            await eventually(established, 60, f"CRD {name} established")
    return created


def _server_defaults(live: Body) -> dict[str, Any]:
    """Top-level spec fields the API server fills in on a CRD (so an unchanged CRD compares equal)."""
    return {k: live["spec"][k] for k in ("conversion",) if k in live["spec"]}


async def apply_examples(kube: KubeClient, namespace: str) -> list[Body]:
    applied = []
    for path in EXAMPLES:
        for doc in load_docs(path):
            doc.setdefault("metadata", {})["namespace"] = namespace
            applied.append(await kube.create(doc))
    return applied


def cond(body: Body | None, type_: str = "Ready") -> dict[str, Any]:
    for c in ((body or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


async def get(kube: KubeClient, api_version: str, plural: str, namespace: str, name: str) -> Body | None:
    return await kube.get(Ref(api_version, plural, namespace, name))


def rule_ref(namespace: str, name: str) -> Ref:
    return Ref("klaxon.dev/v1alpha1", "alertrules", namespace, name)


@asynccontextmanager
async def namespaces(kube: KubeClient, *names: str, labels: dict[str, str] | None = None) -> AsyncIterator[None]:
    for name in names:
        ref = Ref("v1", "namespaces", None, name)

        async def gone(ref: Ref = ref) -> bool:  # a namespace of that name from an earlier test may be terminating
            return await kube.get(ref) is None

        await eventually(gone, 120, f"namespace {name} left by an earlier test to finish terminating")
        meta = {"name": name, "labels": dict(labels or {})}
        await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    try:
        yield
    finally:
        for name in names:
            await kube.delete(Ref("v1", "namespaces", None, name))


async def check_examples(kube: KubeClient, ns: str, other_ns: str, timeout: float = 60) -> dict[str, Any]:
    """Everything the examples should produce; returns a summary for the report."""
    docs = [d for p in EXAMPLES for d in load_docs(p)]
    rules = [d["metadata"]["name"] for d in docs if d["kind"] == "AlertRule"]
    configs = [d for d in docs if d["kind"] == "AlertConfig"]
    channels = [d["metadata"]["name"] for d in docs if d["kind"] == "NotificationChannel"]

    for name in channels:

        async def channel_ready(name: str = name) -> bool:
            return (
                cond(await get(kube, "klaxon.dev/v1alpha1", "notificationchannels", ns, name)).get("status") == "True"
            )

        await eventually(channel_ready, timeout, f"NotificationChannel {name} Ready")

    engines: dict[str, str] = {}
    for name in rules:

        async def rule_settled(name: str = name) -> Body | None:
            # Prometheus-run rules are in effect once applied; evaluator-run rules only once an
            # evaluator runs their shard, and none runs yet: Ready=False says which shard is missing.
            body = await kube.get(rule_ref(ns, name))
            status = (body or {}).get("status") or {}
            ready = cond(body)
            if status.get("engine") == "evaluator":
                return body if ready.get("reason") == "EvaluatorNotReady" else None
            return body if ready.get("status") == "True" else None

        body = await eventually(rule_settled, timeout, f"AlertRule {name} settled")
        status = body["status"]
        assert status["observedGeneration"] == body["metadata"]["generation"]
        assert cond(body, "Valid")["status"] == "True" and cond(body, "Synced")["status"] == "True"
        engines[name] = status["engine"]
        if engines[name] == "evaluator":
            ready = cond(body)
            assert ready["status"] == "False" and "Lease" in ready["message"] and "shard" in ready["message"], ready
        pr_ref = status.get("prometheusRuleRef")
        if pr_ref:
            pr = await get(kube, "monitoring.coreos.com/v1", "prometheusrules", ns, pr_ref["name"])
            assert pr is not None, f"PrometheusRule of {name}"
            (owner,) = pr["metadata"]["ownerReferences"]
            assert owner["uid"] == body["metadata"]["uid"] and owner["controller"] is True
            assert owner["kind"] == "AlertRule" and owner["name"] == name
            assert pr["metadata"]["annotations"]["klaxon.dev/input-hash"]
        else:
            assert engines[name] == "evaluator", f"{name}: no PrometheusRule although engine is prometheus"
    assert "prometheus" in engines.values() and "evaluator" in engines.values(), engines

    for config in configs:
        name = config["metadata"]["name"]
        shards = ((config["spec"].get("evaluator") or {}).get("shards")) or 1

        async def config_synced(name: str = name, shards: int = shards) -> Body | None:
            body = await get(kube, "klaxon.dev/v1alpha1", "alertconfigs", ns, name)
            return (
                body
                if cond(body, "Synced").get("status") == "True"
                and len((body or {}).get("status", {}).get("shards") or []) == shards
                else None
            )

        body = await eventually(config_synced, timeout, f"AlertConfig {name} Synced")
        uid = body["metadata"]["uid"]
        assert cond(body).get("reason") in ("Ready", "EvaluatorNotReady"), cond(body)
        for i in range(shards):
            dep = await get(kube, "apps/v1", "deployments", ns, f"klaxon-eval-{name}-{i}")
            assert dep is not None and dep["metadata"]["ownerReferences"][0]["uid"] == uid
            args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
            assert args[:5] == ["evaluator", "--config", f"{ns}/{name}", "--shard", f"{i}/{shards}"]
        for api_version, plural in (
            ("v1", "serviceaccounts"),
            ("v1", "services"),
            ("rbac.authorization.k8s.io/v1", "roles"),
            ("rbac.authorization.k8s.io/v1", "rolebindings"),
        ):
            child = await get(kube, api_version, plural, ns, f"klaxon-eval-{name}")
            assert child is not None and child["metadata"]["ownerReferences"][0]["uid"] == uid, (plural, name)

    # drift: a PrometheusRule deleted by hand comes back, and the rule says so
    victim = next(n for n, e in engines.items() if e == "prometheus")
    pr_name = (await kube.get(rule_ref(ns, victim)) or {})["status"]["prometheusRuleRef"]["name"]
    await kube.delete(Ref("monitoring.coreos.com/v1", "prometheusrules", ns, pr_name))

    async def restored() -> bool:
        body = await kube.get(rule_ref(ns, victim))
        pr = await get(kube, "monitoring.coreos.com/v1", "prometheusrules", ns, pr_name)
        return (
            pr is not None
            and pr["metadata"].get("deletionTimestamp") is None
            and cond(body, "Synced").get("reason") == "DriftCorrected"
        )

    await eventually(restored, timeout, f"PrometheusRule {pr_name} restored")

    # cross-namespace: denied until the config allows the namespace
    foreign = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": "foreign", "namespace": other_ns},
        "spec": {
            "configRef": {"name": "default", "namespace": ns},
            "query": {"expr": "vector(1)"},
            "condition": {"type": "threshold", "operator": "gt", "threshold": 0},
            "notify": {"channels": []},
        },
    }
    await kube.create(foreign)

    async def reason_is(reason: str) -> bool:
        return cond(await kube.get(rule_ref(other_ns, "foreign"))).get("reason") == reason

    await eventually(lambda: reason_is("CrossNamespaceRefDenied"), timeout, "CrossNamespaceRefDenied")
    await kube.merge_patch(
        Ref("klaxon.dev/v1alpha1", "alertconfigs", ns, "default"), {"spec": {"allowedNamespaces": [other_ns]}}
    )
    await eventually(lambda: reason_is("Ready"), timeout, "foreign rule Ready once allowed")

    # ... and the evaluator gets a Role there (no owner reference across namespaces: a uid label)
    async def granted() -> Body | None:
        config = await get(kube, "klaxon.dev/v1alpha1", "alertconfigs", ns, "default")
        if ((config or {}).get("status") or {}).get("grantedNamespaces") != [other_ns]:
            return None
        role = await get(kube, "rbac.authorization.k8s.io/v1", "roles", other_ns, f"klaxon-eval.{ns}.default")
        binding = await get(kube, "rbac.authorization.k8s.io/v1", "rolebindings", other_ns, f"klaxon-eval.{ns}.default")
        return role if role is not None and binding is not None else None

    role = await eventually(granted, timeout, f"evaluator Role in {other_ns}")
    config_uid = (await get(kube, "klaxon.dev/v1alpha1", "alertconfigs", ns, "default") or {})["metadata"]["uid"]
    assert role["metadata"]["labels"]["klaxon.dev/owner-uid"] == config_uid
    assert not role["metadata"].get("ownerReferences")

    # garbage collection through owner references (the real GC on a cluster)
    await kube.delete(rule_ref(ns, victim))

    async def collected() -> bool:
        return await get(kube, "monitoring.coreos.com/v1", "prometheusrules", ns, pr_name) is None

    await eventually(collected, timeout, f"PrometheusRule {pr_name} garbage-collected")
    return {
        "rules": engines,
        "configs": {c["metadata"]["name"]: (c["spec"].get("evaluator") or {}).get("shards") or 1 for c in configs},
        "channels": channels,
    }


async def check_evaluated(kube: KubeClient, ns: str, names: list[str], timeout: float) -> dict[str, str]:
    """Evaluator-run rules turn Ready once an evaluator runs their shard; returns each Ready message."""
    messages = {}
    for name in names:

        async def ready(name: str = name) -> Body | None:
            body = await kube.get(rule_ref(ns, name))
            return body if cond(body).get("status") == "True" else None

        messages[name] = cond(await eventually(ready, timeout, f"AlertRule {name} Ready once evaluated"))["message"]
    return messages


async def hold_leases(kube: KubeClient, ns: str, config: str, shards: int, holder: str = "e2e-standin") -> None:
    """Take each shard's Lease as its evaluator would (for the emulator, where no evaluator runs)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    for i in range(shards):
        await kube.create(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": f"klaxon-eval-{config}-{i}", "namespace": ns},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3600, "renewTime": now, "acquireTime": now},
            }
        )


async def check_cel_rejects(kube: KubeClient, ns: str) -> str:
    """Without the webhook, the CRD's CEL rules still reject an invalid rule (Kubernetes >= 1.25)."""
    bad = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": "cel-bad", "namespace": ns},
        "spec": {"query": {"expr": "up"}, "events": {"objectTypes": ["person"]}},
    }
    try:
        await kube.create(bad)
    except KubeError as exc:
        assert exc.status == 422, exc
        return exc.message
    raise AssertionError("the API server accepted a rule that violates the CRD's CEL rules")


@asynccontextmanager
async def running_klaxon(kube: KubeClient, watched: tuple[str, ...], image: str = "klaxon:e2e") -> AsyncIterator[Any]:
    """Klaxon's real registry and settings, in-process (kube_harness' runner), limited to ``watched``.

    The emulator's fast variant; against a real API server the suite runs ``klaxon operator`` itself.
    """
    from unittest import mock

    from klaxon.kube.login import connection_info
    from klaxon.operator.handlers import make_registry
    from klaxon.operator.runtime import Options
    from klaxon.operator.settings import configure
    from kube_harness import OperatorRunner, harness_settings

    configuration = kube.api.configuration
    options = Options(
        image=image,
        kube_configuration=configuration,
        resync_seconds=3600,
        evaluation_check_seconds=0.5,
        lease_ttl_seconds=0.2,
    )
    settings = configure(harness_settings())
    runner = OperatorRunner(None, make_registry(options), settings=settings, namespaces=watched)  # type: ignore
    with mock.patch("kube_harness.runner.connection_info", lambda _: connection_info(configuration)):
        await runner.start()
        try:
            yield runner
        finally:
            await runner.stop()
