"""kopf settings for Klaxon: bookkeeping in klaxon.dev annotations, Lease instead of peering."""

from __future__ import annotations

import logging
import pathlib

import kopf

PREFIX = "klaxon.dev"
FINALIZER = f"{PREFIX}/finalizer"
WEBHOOK_CERT = "tls.crt"
WEBHOOK_KEY = "tls.key"


def configure(settings: kopf.OperatorSettings, *, webhook_cert_dir: str | None = None, webhook_port: int = 9443,
              webhook_addr: str = "0.0.0.0", webhook_insecure: bool = False) -> kopf.OperatorSettings:
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
        certdir = pathlib.Path(webhook_cert_dir) if webhook_cert_dir else None
        settings.admission.server = kopf.WebhookServer(
            addr=webhook_addr, port=webhook_port, insecure=webhook_insecure,
            certfile=str(certdir / WEBHOOK_CERT) if certdir else None,
            pkeyfile=str(certdir / WEBHOOK_KEY) if certdir else None)
        settings.admission.managed = None  # the chart owns the ValidatingWebhookConfiguration
    return settings
