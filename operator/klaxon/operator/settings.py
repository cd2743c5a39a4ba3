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


#: kopf's API requests are retried after these delays (then capped, as often as the budget allows).
API_RETRY_FIRST = (0.2, 0.5, 1.0)
API_RETRY_CAP = 2.0


def api_backoffs(total: float) -> list[float]:
    """Delays between kopf's attempts of one API request, ``total`` seconds in all.

    Short and capped: kopf's sleeps between attempts cannot be woken, so the cap is how late a
    returning API server is noticed. Long in all: when kopf runs out of attempts for a watch or
    its own patch it gives up altogether (the process then exits), so an ordinary API server
    restart must fit in easily. (kopf's default, 1 s to 21 s over 54 s, did neither.)
    """
    delays: list[float] = []
    for delay in (*API_RETRY_FIRST, *[API_RETRY_CAP] * int(total / API_RETRY_CAP + 1)):
        if sum(delays) + delay > total:
            break
        delays.append(delay)
    return delays


def configure(
    settings: kopf.OperatorSettings,
    *,
    webhook_cert_dir: str | None = None,
    webhook_port: int = 9443,
    webhook_addr: str = "0.0.0.0",
    webhook_insecure: bool = False,
    api_retry_seconds: float = 300.0,
) -> kopf.OperatorSettings:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.persistence.finalizer = FINALIZER
    settings.peering.standalone = True  # several replicas coordinate through a Lease (klaxon.kube.lease)
    settings.posting.level = logging.WARNING  # our own Events say what matters; kopf posts only problems
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.networking.error_backoffs = api_backoffs(api_retry_seconds)
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
    refusals_are_info()
    return settings


class _Refusals(logging.Filter):
    """kopf logs each refusal of our validating webhook as an ERROR ("Webhook 'validate-alertrule'
    failed permanently: ..."): bad input refused at the door is the webhook working, not the
    operator failing. Such records go out at INFO, saying what was refused and why."""

    PREFIX = "Webhook 'validate-"

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.levelno == logging.ERROR and text.startswith(self.PREFIX) and "failed permanently: " in text:
            record.msg, record.args = "Refused at admission: %s", (text.split("failed permanently: ", 1)[1],)
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_REFUSALS = _Refusals()


def refusals_are_info() -> None:
    logging.getLogger("kopf.objects").addFilter(_REFUSALS)  # once: the same filter is not added twice
