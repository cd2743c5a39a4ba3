"""klaxon.operator."""

# Before kopf is imported: kopf imports kubernetes_asyncio, made lazy by klaxon.kube.
from .. import kube as _kube  # noqa: F401
