"""Where a process finds its cluster: in-cluster credentials first, then a kubeconfig."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kubernetes_asyncio import client, config


@asynccontextmanager
async def api_client(kubeconfig: str | None = None) -> AsyncIterator[client.ApiClient]:
    """An ApiClient for the pod's service account, or for ``kubeconfig`` (None: the default file)."""
    try:
        if kubeconfig:
            raise config.ConfigException("an explicit kubeconfig wins")
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config(config_file=kubeconfig)
    async with client.ApiClient() as api:
        yield api
