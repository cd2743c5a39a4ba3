"""Klaxon against a real API server: CRDs, examples, children, owner references, status, GC, CEL."""

from __future__ import annotations

import secrets

import pytest

from e2e.scenario import (
    KubeClient,
    apply_examples,
    check_cel_rejects,
    check_examples,
    install_crds,
    namespaces,
    running_klaxon,
)

pytestmark = pytest.mark.e2e


async def server_minor(kube: KubeClient) -> int:
    version = await kube.request("GET", "/version")
    return int(str(version.get("minor", "0")).rstrip("+"))


async def test_examples_reconcile_on_a_real_cluster(cluster: KubeClient) -> None:
    await install_crds(cluster)
    ns = f"klaxon-e2e-{secrets.token_hex(3)}"
    other = f"{ns}-b"
    async with namespaces(cluster, ns, other), running_klaxon(cluster, (ns, other)):
        await apply_examples(cluster, ns)
        summary = await check_examples(cluster, ns, other, timeout=120)
    print(f"e2e summary: {summary}")


async def test_crd_cel_rules_reject_without_the_webhook(cluster: KubeClient) -> None:
    await install_crds(cluster)
    if await server_minor(cluster) < 25:
        pytest.skip("CRD validation rules (CEL) are beta from Kubernetes 1.25; 1.24 drops them")
    ns = f"klaxon-e2e-{secrets.token_hex(3)}"
    async with namespaces(cluster, ns):
        message = await check_cel_rejects(cluster, ns)
    assert "set exactly one of query" in message
