"""kopf settings for Klaxon: bookkeeping in klaxon.dev annotations, Lease instead of peering."""

from __future__ import annotations

import logging
import pathlib

import kopf

from ..api.constants import GROUP

PREFIX = GROUP  # kopf's progress annotations and the finalizer carry our group
FINALIZER = f"{PREFIX}/finalizer"
WEBHOOK_CERT = "tls.crt"
WEBHOOK_KEY = "tls.key"


def configure(
    settings: kopf.OperatorSettings,
    *,
    webhook_cert_dir: str | None = None,
    webhook_port: int = 9443,
    webhook_addr: str = "0.0.0.0",
    webhook_insecure: bool = False,
) -> kopf.OperatorSettings:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.persistence.finalizer = FINALIZER
    settings.peering.standalone = True  # several replicas coordinate through a Lease (klaxon.kube.lease)
    settings.posting.level = logging.WARNING  # our own Events say what matters; kopf posts only problems
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]
    if webhook_cert_dir is not None or webhook_insecure:
        configure_webhook(
            settings, webhook_cert_dir, port=webhook_port, addr=webhook_addr, insecure=webhook_insecure
        )
    return settings


def configure_webhook(
    settings: kopf.OperatorSettings,
    cert_dir: str | None,
    *,
    port: int = 9443,
    addr: str = "0.0.0.0",
    insecure: bool = False,
) -> kopf.OperatorSettings:
    """Serve kopf's admission webhooks with the certificate mounted at ``cert_dir`` (tls.crt, tls.key).

    kopf reloads the server when the files change, so cert-manager renewals need no restart.
    """
    certdir = pathlib.Path(cert_dir) if cert_dir else None
    if certdir is not None and not insecure:
        for file in (WEBHOOK_CERT, WEBHOOK_KEY):
            if not (certdir / file).is_file():
                raise FileNotFoundError(f"webhook certificate directory {certdir} has no {file}")
    settings.admission.server = kopf.WebhookServer(
        addr=addr,
        port=port,
        insecure=insecure,
        certfile=str(certdir / WEBHOOK_CERT) if certdir else None,
        pkeyfile=str(certdir / WEBHOOK_KEY) if certdir else None,
    )
    settings.admission.managed = None  # the chart owns the ValidatingWebhookConfiguration
    return settings
