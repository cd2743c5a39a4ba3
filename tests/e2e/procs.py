"""Klaxon's processes as a user runs them (``klaxon operator``, ``klaxon evaluator``) against a real cluster,
plus what the API server needs to call the operator's webhook on loopback (certificates, a
ValidatingWebhookConfiguration) and ``kubectl`` itself."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from klaxon.kube.client import KubeClient, Ref
from support.prometheus import free_port

KUBECTL = shutil.which("kubectl") or "kubectl"
KINDS = (("AlertRule", "alertrules"), ("AlertConfig", "alertconfigs"), ("NotificationChannel", "notificationchannels"))


@dataclass
class Proc:
    """A running ``klaxon`` process; its output goes to ``log`` (shown when a test fails)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.popen.send_signal(sig)
        self.popen.wait(timeout=30)

    def stop(self) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return int(self.popen.returncode)


def _spawn(name: str, args: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    log = workdir / f"{name}.log"
    out = log.open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "klaxon.cli", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True,
    )
    out.close()
    return Proc(name, popen, log)


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


async def wait_http(proc: Proc, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()[-4000:]}")
        if await asyncio.to_thread(_get, url) == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{proc.name} not ready at {url} after {timeout}s:\n{proc.output()[-4000:]}")


@asynccontextmanager
async def operator_process(
    kubeconfig: str,
    namespaces: Sequence[str],
    workdir: Path,
    *,
    webhook: WebhookCerts | None = None,
    lease_namespace: str | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Proc]:
    """``klaxon operator`` restricted to ``namespaces``; yields once /readyz says it leads and serves."""
    health = free_port()
    args = ["operator", "--kubeconfig", kubeconfig, "--metrics-port", "0", "--health-port", str(health)]
    for ns in namespaces:
        args += ["--namespace", ns]
    args += ["--lease-namespace", lease_namespace or namespaces[0], "--lease-name", f"klaxon-e2e-{health}"]
    if webhook is not None:
        args += ["--webhook-cert-dir", str(webhook.dir), "--webhook-port", str(webhook.port)]
    proc = _spawn("operator", args, workdir, env)
    proc.ports["health"] = health
    try:
        await wait_http(proc, f"http://127.0.0.1:{health}/readyz", 90)
        yield proc
    finally:
        proc.stop()


def evaluator_process(
    kubeconfig: str, config: str, shard: tuple[int, int], workdir: Path, *, env: dict[str, str] | None = None
) -> Proc:
    """``klaxon evaluator`` for one shard, with the Lease its Deployment would hold."""
    name = config.split("/")[1]
    index, count = shard
    metrics = free_port()
    state = workdir / f"state-{name}-{index}"
    state.mkdir(exist_ok=True)
    args = [
        "evaluator", "--config", config, "--shard", f"{index}/{count}", "--kubeconfig", kubeconfig,
        "--metrics-port", str(metrics), "--state-dir", str(state), "--lease", f"klaxon-eval-{name}-{index}",
        "--tick", "1",
    ]  # fmt: skip
    proc = _spawn(f"evaluator-{name}-{index}", args, workdir, env)
    proc.ports["metrics"] = metrics
    return proc


@dataclass(frozen=True)
class WebhookCerts:
    dir: Path
    ca_bundle: str  # base64 PEM, as a ValidatingWebhookConfiguration wants it
    port: int


@contextmanager
def webhook_certs() -> Iterator[WebhookCerts]:
    """A throwaway CA and a serving certificate for 127.0.0.1 (what cert-manager would provide)."""
    openssl = shutil.which("openssl") or "openssl"
    with tempfile.TemporaryDirectory(prefix="klaxon-webhook-") as tmp:
        d = Path(tmp)
        (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        steps = [
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "1", "-subj", "/CN=klaxon-e2e-ca"],
            [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
             "-subj", "/CN=127.0.0.1"],
            [openssl, "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "tls.crt", "-days", "1", "-extfile", "san.cnf"],
        ]  # fmt: skip
        for step in steps:
            subprocess.run(step, cwd=d, check=True, capture_output=True, timeout=60)
        bundle = base64.b64encode((d / "ca.crt").read_bytes()).decode()
        yield WebhookCerts(d, bundle, free_port())


def webhook_configuration(name: str, certs: WebhookCerts, selector: dict[str, str]) -> dict[str, Any]:
    """What the chart's webhook.yaml registers, pointed at the operator on loopback instead of a Service."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{kind.lower()}.klaxon.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": 10,
                "clientConfig": {
                    "url": f"https://127.0.0.1:{certs.port}/validate-{kind.lower()}",
                    "caBundle": certs.ca_bundle,
                },
                "rules": [
                    {
                        "apiGroups": ["klaxon.dev"],
                        "apiVersions": ["v1alpha1"],
                        "resources": [plural],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": selector},
            }
            for kind, plural in KINDS
        ],
    }


@asynccontextmanager
async def registered_webhook(
    kube: KubeClient, name: str, certs: WebhookCerts, selector: dict[str, str]
) -> AsyncIterator[None]:
    await kube.create(webhook_configuration(name, certs, selector))
    try:
        yield
    finally:
        await kube.delete(Ref("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", None, name))


def kubectl(
    kubeconfig: str, *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "KUBECTL_SKEW_WARNING": "false"},
    )
