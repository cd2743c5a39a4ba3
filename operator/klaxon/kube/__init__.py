"""klaxon.kube."""

from .lazy_client import install as _lazy_kubernetes_asyncio

# Before anything imports kubernetes_asyncio (or kopf, which imports it): see lazy_client.
_lazy_kubernetes_asyncio()
