"""kopf credentials from the same Configuration Klaxon's own client uses: one source of truth."""

from __future__ import annotations

from kopf import ConnectionInfo
from kubernetes_asyncio import client as k8s


def connection_info(configuration: k8s.Configuration, default_namespace: str | None = None) -> ConnectionInfo:
    """Translate a loaded kubernetes-asyncio Configuration (kubeconfig or in-cluster) for kopf."""
    token: str | None = None
    scheme: str | None = None
    auth = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get(
        "BearerToken"
    )
    if auth:
        scheme, _, token = str(auth).partition(" ")
        if not token:
            scheme, token = "Bearer", scheme
    return ConnectionInfo(
        server=str(configuration.host).rstrip("/"),
        ca_path=configuration.ssl_ca_cert or None,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file or None,
        private_key_path=configuration.key_file or None,
        default_namespace=default_namespace,
        priority=100,
    )
