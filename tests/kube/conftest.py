"""Fixtures of the Kubernetes client suite: the emulated API."""

from kube_harness.fixtures import kube, kube_api

__all__ = ["kube", "kube_api"]
