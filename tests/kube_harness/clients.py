"""Kubernetes clients (other than kopf's) configured for the emulator.

Product code that talks to the API through kubernetes-asyncio gets an
``ApiClient`` here; code that loads a kubeconfig gets a file.
"""
from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator

import yaml
from kubernetes_asyncio import client as k8s_client

from .emulator import EmulatedCluster


def client_configuration(cluster: EmulatedCluster) -> k8s_client.Configuration:
    """A kubernetes-asyncio Configuration for the emulator's loopback URL (plain HTTP)."""
    configuration = k8s_client.Configuration(host=str(cluster.url).rstrip('/'))
    configuration.verify_ssl = False
    return configuration


@contextlib.asynccontextmanager
async def api_client(cluster: EmulatedCluster) -> AsyncIterator[k8s_client.ApiClient]:
    """An ApiClient for the emulator; closed on exit so aiohttp does not warn."""
    async with k8s_client.ApiClient(configuration=client_configuration(cluster)) as api:
        yield api


def write_kubeconfig(cluster: EmulatedCluster, path: pathlib.Path,
                     namespace: str = 'default') -> pathlib.Path:
    """A kubeconfig pointing at the emulator, for code that calls ``load_kube_config()``."""
    path.write_text(yaml.safe_dump({
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'kube-harness',
        'clusters': [{'name': 'kube-harness', 'cluster': {'server': str(cluster.url).rstrip('/')}}],
        'users': [{'name': 'kube-harness', 'user': {'token': 'kube-harness'}}],
        'contexts': [{'name': 'kube-harness', 'context': {
            'cluster': 'kube-harness', 'user': 'kube-harness', 'namespace': namespace}}],
    }))
    return path
