"""The e2e scenario (tests/e2e/scenario.py) against the emulator: proves the scenario on every run."""

from __future__ import annotations

import time

from e2e.scenario import (
    KubeClient,
    Ref,
    apply_examples,
    check_evaluated,
    check_examples,
    cond,
    eventually,
    hold_leases,
    install_crds,
    namespaces,
    rule_ref,
    running_klaxon,
)
from kube_harness import EmulatedCluster, client_configuration


async def test_e2e_scenario_on_the_emulator(kube: EmulatedCluster) -> None:
    client = await KubeClient.connect(client_configuration(kube))
    try:
        created = await install_crds(client)
        assert "prometheusrules.monitoring.coreos.com" in created and "alertrules.klaxon.dev" in created
        async with namespaces(client, "e2e-a", "e2e-b"), running_klaxon(client, ("e2e-a", "e2e-b")):
            await apply_examples(client, "e2e-a")
            summary = await check_examples(client, "e2e-a", "e2e-b", timeout=15)
            assert set(summary["configs"]) == {"default", "site-security"}
            assert summary["rules"]["night-person-detection"] == "evaluator"

            # No evaluator runs on the emulator: stand in for one. Event rules need their shard's
            # Lease held; rules evaluated on a clock need a recent lastEvaluation.
            waiting = [n for n, e in summary["rules"].items() if e == "evaluator"]
            for config, shards in summary["configs"].items():
                await hold_leases(client, "e2e-a", config, shards)
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            for name in waiting:
                body = await client.get(rule_ref("e2e-a", name)) or {}
                if not (body.get("spec") or {}).get("events"):
                    assert "not held" in cond(body)["message"], cond(body)
                    patch = {"status": {"lastEvaluation": {"time": now, "message": "1 Inactive"}}}
                    await client.merge_patch(rule_ref("e2e-a", name), patch, subresource="status")
            messages = await check_evaluated(client, "e2e-a", waiting, timeout=15)
            assert all(m == "the rule is in effect" for m in messages.values()), messages

            # The shard-0 evaluator of an event rule's config stops renewing its Lease: the rule says so.
            event_rule = "perimeter-intrusion"  # configRef site-security
            lease = Ref("coordination.k8s.io/v1", "leases", "e2e-a", "klaxon-eval-site-security-0")
            await client.merge_patch(lease, {"spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}})

            async def not_ready() -> bool:
                ready = cond(await client.get(rule_ref("e2e-a", event_rule)))
                return ready.get("reason") == "EvaluatorNotReady" and "not held" in ready.get("message", "")

            await eventually(not_ready, 15, "event rule EvaluatorNotReady once its Lease expired")
    finally:
        await client.close()
