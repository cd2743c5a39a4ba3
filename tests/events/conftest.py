"""Fixtures of the live-event suite: the emulated Kubernetes API for ``klaxon entries``."""

from kube_harness.fixtures import kube, kube_api

__all__ = ["kube", "kube_api"]
