"""Fixtures of the evaluator suite: a real Prometheus over backfilled data, the emulated cluster,
a recording HTTP receiver for notification channels."""

from kube_harness.fixtures import kube, kube_api
from support.prometheus import prometheus_server
from support.receiver import receiver

__all__ = ["kube", "kube_api", "prometheus_server", "receiver"]
