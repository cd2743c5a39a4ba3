"""What ``klaxon evaluator`` is told (everything else comes from the AlertConfig), and the
shard's leader election built from it."""

from __future__ import annotations

from dataclasses import dataclass

from klaxon.api.constants import LEADER_ADDRESS_ANNOTATION
from klaxon.evaluator.connect import DEFAULT_STATE_DIR
from klaxon.kube.client import KubeClient
from klaxon.kube.lease import LeaderElector, pod_identity

#: How long ``once`` waits for queued notifications to be delivered before it exits.
ONCE_DRAIN_S = 30.0


@dataclass(frozen=True)
class EvaluatorOptions:
    """What ``klaxon evaluator`` is told; everything else comes from the AlertConfig."""

    config_namespace: str
    config_name: str
    shard: str = "0/1"
    #: port of /metrics, /healthz, /readyz and POST /v1/events (0: none)
    metrics_port: int = 8081
    #: seconds between cycles; 0: min(10 s, the AlertConfig's default interval)
    tick: float = 0.0
    #: run one cycle, deliver what it queued and exit
    once: bool = False
    state_dir: str = DEFAULT_STATE_DIR
    #: the shard's Lease (in the AlertConfig's namespace); "": no election
    lease: str = ""
    lease_duration: float = 15.0
    #: where standbys forward events while this replica leads ("": nowhere)
    address: str = ""

    @property
    def config(self) -> str:
        return f"{self.config_namespace}/{self.config_name}"


def elector_for(kube: KubeClient, opts: EvaluatorOptions) -> LeaderElector | None:
    """``lease``: one active replica per shard, the others stand by (Lease in the config's namespace)."""
    if not opts.lease:
        return None
    d = opts.lease_duration
    return LeaderElector(
        kube,
        opts.config_namespace,
        opts.lease,
        pod_identity(),
        duration=d,
        renew=max(0.2, d / 3),
        retry=max(0.2, d / 3),
        deadline=max(0.5, d * 2 / 3),
        annotations={LEADER_ADDRESS_ANNOTATION: opts.address} if opts.address else {},
    )
