"""Secret reads: the decoded data of one Secret. Values are returned, never logged.

kubernetes-asyncio logs every response body at DEBUG; ``guard_client_logs`` keeps a Secret's
data out of that log.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re

from .client import KubeClient, Ref

log = logging.getLogger(__name__)

_SECRET_BODY = re.compile(r'"kind":\s*"Secret(List)?"')
#: kubernetes-asyncio logs every response body at DEBUG: a Secret's data must not go with it.
CLIENT_LOGGER = "kubernetes_asyncio.client.rest"


class SecretBodyFilter(logging.Filter):
    """Replaces a logged API response that is a Secret (or SecretList) with a placeholder."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a filter must never break logging; a record it cannot format passes
            return True
        if _SECRET_BODY.search(text):
            record.msg, record.args = "response body: <a Secret; not logged>", ()
        return True


def guard_client_logs(logger: logging.Logger | None = None) -> None:
    """Install ``SecretBodyFilter`` on the Kubernetes client's logger (idempotent)."""
    target = logger or logging.getLogger(CLIENT_LOGGER)
    if not any(isinstance(f, SecretBodyFilter) for f in target.filters):
        target.addFilter(SecretBodyFilter())


async def read_secret(kube: KubeClient, namespace: str, name: str) -> dict[str, str] | None:
    """The decoded data of Secret ``namespace/name`` (None when it does not exist).

    A key that is not base64-encoded UTF-8 is left out (and logged by name). Other API errors
    raise ``KubeError``: its message is the server's Status, never Secret data.
    """
    guard_client_logs()
    secret = await kube.get(Ref("v1", "secrets", namespace, name))
    if secret is None:
        return None
    data: dict[str, str] = {}
    for key, raw in (secret.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(raw).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            log.warning("Secret %s/%s key %r is not base64-encoded UTF-8; ignored", namespace, name, key)
    for key, value in (secret.get("stringData") or {}).items():  # as written, where nobody encoded it
        data.setdefault(str(key), str(value))
    return data
