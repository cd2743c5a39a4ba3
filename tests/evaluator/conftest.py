"""Fixtures of the evaluator suite: a real Prometheus over backfilled data, the emulated cluster."""

from kube_harness.fixtures import kube, kube_api
from support.prometheus import prometheus_server

__all__ = ["kube", "kube_api", "prometheus_server"]
