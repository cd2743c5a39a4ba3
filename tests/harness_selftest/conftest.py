"""Reuse the harness fixtures: ``kube``, ``kube_api``, ``kopf_settings``, ``kopf_runner``."""
from kube_harness.fixtures import kopf_runner, kopf_settings, kube, kube_api

__all__ = ['kopf_runner', 'kopf_settings', 'kube', 'kube_api']
