"""Prometheus behind basic auth and TLS: credentials and CA come from Secrets via the Kubernetes API.

Prometheus' own `--web.config.file` (bcrypt `basic_auth_users`, `tls_server_config` with a
self-signed certificate); the AlertConfig references a Secret in its namespace; the evaluator
reads it through `klaxon.kube` and never logs it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
from pathlib import Path
from typing import Any

import pytest

from evaluator.helpers import MIN, T0, minutes, run_loop
from klaxon.cli.main import build_parser

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"
SECRETS = "v1/secrets"
PASSWORD = "s3cr3t-Pa55-for-klaxon"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def setup(kube: Any, url: str, password: str, ca_pem: str) -> None:
    kube.create_object(
        SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prom-creds"},
            "data": {"user": b64("klaxon"), "pass": b64(password), "ca.crt": b64(ca_pem)},
        },
        namespace="mon",
    )
    kube.create_object(
        AC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertConfig",
            "metadata": {"name": "main"},
            "spec": {
                "prometheus": {
                    "url": url,
                    "timeout": "5s",
                    "auth": {
                        "basicAuth": {
                            "username": {"name": "prom-creds", "key": "user"},
                            "password": {"name": "prom-creds", "key": "pass"},
                        }
                    },
                    "tls": {"ca": {"name": "prom-creds", "key": "ca.crt"}},
                }
            },
        },
        namespace="mon",
    )
    kube.create_object(
        AR,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertRule",
            "metadata": {"name": "hot"},
            "spec": {
                "configRef": {"name": "main"},
                "query": {"metric": "temp", "splitBy": ["room"], "window": "5m"},
                "condition": {"operator": "gt", "threshold": 80},
                "evaluation": {"engine": "evaluator"},
            },
        },
        namespace="mon",
    )


async def evaluate_once(kube: Any, kube_api: Any, monkeypatch: Any, caplog: Any, tmp_path: Any) -> dict[str, Any]:
    """`klaxon evaluator --once` at T0+60m; the rule's status afterwards."""
    caplog.set_level(logging.DEBUG)
    args = build_parser().parse_args(
        ["evaluator", "--config", "mon/main", "--once", "--metrics-port", "0", "--state-dir", str(tmp_path)]
    )
    assert await asyncio.wait_for(run_loop(args, kube_api, asyncio.Event(), clock=lambda: T0 + 60 * MIN), 30) == 0
    return dict((kube.get_object(AR, "hot", "mon") or {})["status"])


@pytest.mark.parametrize("password", [PASSWORD, "wrong-password"])
async def test_basic_auth_and_ca_from_secrets(
    kube, kube_api, prometheus_server, monkeypatch, caplog, tmp_path, password: str
) -> None:
    prom = prometheus_server(
        series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 120 * MIN, 95.0))],
        basic_auth=("klaxon", PASSWORD),
        tls=True,
    )
    assert prom.url.startswith("https://") and prom.ca_file is not None
    setup(kube, prom.url, password, prom.ca_file.read_text())

    status = await evaluate_once(kube, kube_api, monkeypatch, caplog, tmp_path)
    if password == PASSWORD:
        assert status["state"] == "Firing", status
        assert status["firingSince"]
    else:  # 401 is not retried and is an Error, not a resolution
        assert status["state"] == "Error" and status["reason"] == "QueryError"
        assert "401" in status["lastEvaluation"]["message"]
    for secret in (password, b64(password)):
        assert secret not in str(status)
        assert not [r for r in caplog.records if r.name.startswith("klaxon") and secret in r.getMessage()]


@pytest.mark.parametrize(
    ("client_cert", "server_name", "ok"),
    [(True, True, True), (False, True, False), (True, False, False)],
    ids=["mtls-and-server-name", "no-client-cert", "no-server-name"],
)
async def test_client_certificate_and_server_name_from_secrets(
    kube, kube_api, prometheus_server, monkeypatch, caplog, tmp_path, client_cert: bool, server_name: bool, ok: bool
) -> None:
    """Prometheus requires a client certificate (RequireAndVerifyClientCert) and its own certificate
    names only prometheus.monitoring.svc, while the URL says 127.0.0.1: both settings are needed."""
    prom = prometheus_server(
        series=[({"__name__": "temp", "room": "lab"}, minutes(T0, T0 + 120 * MIN, 95.0))],
        tls=True,
        server_name="prometheus.monitoring.svc",
        mtls=True,
    )
    assert prom.ca_file and prom.client_cert and prom.client_key
    key_pem = prom.client_key.read_text()
    setup(kube, prom.url, PASSWORD, prom.ca_file.read_text())
    kube.patch_object(
        SECRETS,
        "prom-creds",
        {"data": {"tls.crt": b64(prom.client_cert.read_text()), "tls.key": b64(key_pem)}},
        namespace="mon",
    )
    tls: dict[str, Any] = {"ca": {"name": "prom-creds", "key": "ca.crt"}}
    if client_cert:
        tls |= {"cert": {"name": "prom-creds", "key": "tls.crt"}, "key": {"name": "prom-creds", "key": "tls.key"}}
    if server_name:
        tls["serverName"] = "prometheus.monitoring.svc"
    kube.patch_object(AC, "main", {"spec": {"prometheus": {"auth": None, "tls": tls}}}, namespace="mon")

    status = await evaluate_once(kube, kube_api, monkeypatch, caplog, tmp_path)
    if ok:
        assert status["state"] == "Firing", status
    else:
        assert status["state"] == "Error" and status["reason"] == "QueryError", status
    assert "PRIVATE KEY" not in str(status) and not [r for r in caplog.records if "PRIVATE KEY" in r.getMessage()]
    assert not list(Path(tempfile.gettempdir()).glob("klaxon-key-*"))  # the key file is gone again
