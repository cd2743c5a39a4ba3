"""Operator tests: the real kopf registry against the kube_harness emulator (kmock-based)."""

from __future__ import annotations

from kube_harness.fixtures import kopf_runner, kopf_settings, kube, kube_api
from support.operator_helpers import operator

__all__ = ["kopf_runner", "kopf_settings", "kube", "kube_api", "operator"]
