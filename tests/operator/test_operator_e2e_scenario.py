"""The e2e scenario (tests/e2e/scenario.py) against the emulator: proves the scenario on every run."""

from __future__ import annotations

from e2e.scenario import KubeClient, apply_examples, check_examples, install_crds, namespaces, running_klaxon
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
    finally:
        await client.close()
