from __future__ import annotations

from kube_harness import EmulatedCluster, OperatorRunner

from operator_helpers import AC, AR, NS, PR, alert_config, rule, wait_condition


async def test_smoke(kube: EmulatedCluster, operator: OperatorRunner) -> None:
    kube.create_object(AC, alert_config(), NS)
    kube.create_object(AR, rule("r1"), NS)
    await wait_condition(kube, AR, "r1", "True")
    print(kube.get_object(AR, "r1", NS))
    print(kube.get_object(PR, "klaxon-r1", NS))
    await wait_condition(kube, AC, "default", "False", "EvaluatorNotReady")
    print(kube.get_object(AC, "default", NS)["status"])
