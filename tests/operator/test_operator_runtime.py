"""Serving concerns: the admission webhook through kopf, Lease election, `klaxon operator`, metrics."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from klaxon.kube.client import KubeClient
from klaxon.kube.lease import LeaderElector, Leadership
from klaxon.kube.login import connection_info
from klaxon.operator.handlers import make_registry
from klaxon.operator.runtime import Options
from klaxon.operator.settings import configure_webhook
from kube_harness import (
    EmulatedCluster,
    OperatorRunner,
    client_configuration,
    harness_settings,
    wait_for,
    write_kubeconfig,
)
from support.operator_helpers import AC, AR, NS, PR, alert_config, rule, wait_condition

SRC = pathlib.Path(__file__).resolve().parents[2] / "operator"
LEASES = "coordination.k8s.io/v1/leases"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def cert_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A self-signed certificate laid out as a mounted kubernetes.io/tls Secret (tls.crt, tls.key)."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(tmp_path / "tls.key"),
            "-out",
            str(tmp_path / "tls.crt"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return tmp_path


def review(obj: dict[str, Any], operation: str = "CREATE", plural: str = "alertrules") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "req-1",
            "kind": {"group": "klaxon.dev", "version": "v1alpha1", "kind": obj["kind"]},
            "resource": {"group": "klaxon.dev", "version": "v1alpha1", "resource": plural},
            "operation": operation,
            "userInfo": {"username": "alice"},
            "namespace": NS,
            "name": obj["metadata"]["name"],
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }


async def test_webhook_through_kopf_admission_server(
    kube: EmulatedCluster,
    kopf_runner: Callable[..., OperatorRunner],
    cert_dir: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    settings = configure_webhook(harness_settings(), str(cert_dir), port=port, addr="127.0.0.1")
    options = Options(kube_configuration=client_configuration(kube))
    runner = kopf_runner(make_registry(options, webhook=True), settings=settings)
    await runner.start()
    context = ssl.create_default_context(cafile=str(cert_dir / "tls.crt"))

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            for _ in range(50):  # the server starts with the operator, a moment later
                try:
                    async with session.post(f"https://127.0.0.1:{port}/{path}", json=body, ssl=context) as resp:
                        assert resp.status == 200
                        result: dict[str, Any] = await resp.json()
                        return result
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.1)
        raise AssertionError("the webhook server never listened")

    accepted = await post("validate-alertrule", review(rule("good")))
    assert accepted["response"] == {"uid": "req-1", "allowed": True} or accepted["response"]["allowed"] is True

    bad = rule("bad", severity="urgent")
    bad["spec"]["condition"]["operator"] = "above"
    rejected = await post("validate-alertrule", review(bad))
    response = rejected["response"]
    assert response["allowed"] is False and response["status"]["code"] == 422
    message = response["status"]["message"]
    assert "AlertRule bad is invalid" in message
    assert "spec.severity: unknown value 'urgent' (allowed: info, warning, critical)" in message
    assert "spec.condition.operator" in message

    channel = {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "NotificationChannel",
        "metadata": {"name": "c"},
        "spec": {"type": "slack", "slack": {"webhookUrl": "https://hooks.slack.com/inline"}},
    }
    inline = await post("validate-notificationchannel", review(channel, plural="notificationchannels"))
    assert inline["response"]["allowed"] is False
    assert "inline credentials are not allowed" in inline["response"]["status"]["message"]
    deleting = await post("validate-alertrule", review(bad, operation="DELETE"))
    assert deleting["response"]["allowed"] is True
    # A refusal is the webhook working: logged at INFO with its reason, never as an error.
    kopf_records = [r for r in caplog.records if r.name == "kopf.objects"]
    refused = [r for r in kopf_records if r.getMessage().startswith("Refused at admission: ")]
    assert [r.levelname for r in refused] == ["INFO", "INFO"], [r.getMessage() for r in kopf_records]
    assert "spec.severity: unknown value 'urgent'" in refused[0].getMessage()
    assert not [r for r in kopf_records if r.levelno >= logging.ERROR]


def test_webhook_needs_both_certificate_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "tls.crt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"tls\.key"):
        configure_webhook(harness_settings(), str(tmp_path))


async def test_lease_elects_one_leader_and_hands_over(kube: EmulatedCluster) -> None:
    kube.create_object("v1/namespaces", {"metadata": {"name": "ops"}})
    a_kube = await KubeClient.connect(client_configuration(kube))
    b_kube = await KubeClient.connect(client_configuration(kube))
    try:
        a = LeaderElector(a_kube, "ops", "klaxon", "a", duration=1.0, renew=0.2, retry=0.05)
        b = LeaderElector(b_kube, "ops", "klaxon", "b", duration=1.0, renew=0.2, retry=0.05)
        await a.acquire()
        assert not await b.try_acquire()
        assert await a.try_acquire()  # renewal by the holder
        lease = kube.get_object("coordination.k8s.io/v1/leases", "klaxon", "ops")
        assert lease is not None and lease["spec"]["holderIdentity"] == "a"

        await a.release()  # clean exit: the standby takes over at once
        await asyncio.wait_for(b.acquire(), timeout=2)
        assert (
            kube.get_object("coordination.k8s.io/v1/leases", "klaxon", "ops")["spec"][  # type: ignore[index]
                "holderIdentity"
            ]
            == "b"
        )
        assert not await a.try_acquire()

        # b stops renewing (a hung leader): a takes over after the lease duration, b notices and stops
        await asyncio.sleep(1.2)
        assert await a.try_acquire()
        lease = kube.get_object("coordination.k8s.io/v1/leases", "klaxon", "ops")
        assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseTransitions"] == 2  # type: ignore
        await asyncio.wait_for(b.keep(), timeout=3)
        assert b.lost.is_set() and not b.leading.is_set()
    finally:
        await a_kube.close()
        await b_kube.close()


async def test_leadership_stands_by_gives_up_on_stop_and_stops_when_the_lease_is_lost(kube: EmulatedCluster) -> None:
    """The one helper the operator and the evaluator hold their Lease with."""
    kube.create_object("v1/namespaces", {"metadata": {"name": "ops"}})
    a_kube = await KubeClient.connect(client_configuration(kube))
    b_kube = await KubeClient.connect(client_configuration(kube))
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = Leadership(LeaderElector(a_kube, "ops", "klaxon", "a", duration=5.0, renew=0.05, retry=0.05), stop_a)
    b = Leadership(LeaderElector(b_kube, "ops", "klaxon", "b", duration=5.0, renew=0.05, retry=0.05), stop_b)
    try:
        assert await a.acquire() and not stop_a.is_set()
        standby = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.3)
        assert not standby.done()  # a standby waits while the Lease is held
        stop_b.set()
        assert await asyncio.wait_for(standby, 2) is False and not b.lost  # told to stop: gives up waiting

        # someone else holds the Lease now: the leader notices at its next renewal and stops its process
        renewed = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        kube.patch_object(LEASES, "klaxon", {"spec": {"holderIdentity": "c", "renewTime": renewed}}, "ops")
        await asyncio.wait_for(stop_a.wait(), 2)
        assert a.lost
        await a.release()  # not ours any more: left as it is
        assert kube.get_object(LEASES, "klaxon", "ops")["spec"]["holderIdentity"] == "c"  # type: ignore[index]
    finally:
        await a_kube.close()
        await b_kube.close()


async def test_login_from_an_explicit_kubeconfig(kube: EmulatedCluster, tmp_path: pathlib.Path) -> None:
    path = write_kubeconfig(kube, tmp_path / "kubeconfig")
    client = await KubeClient.connect(kubeconfig=str(path))
    try:
        info = connection_info(client.api.configuration)
        assert info.server == str(kube.url).rstrip("/")
        assert info.scheme == "Bearer" and info.token == "kube-harness"
        assert (
            await client.get(
                client_ref := __import__("klaxon.kube.client", fromlist=["Ref"]).Ref("v1", "namespaces", None, "nope")
            )
            is None
        ), client_ref
    finally:
        await client.close()


async def test_klaxon_operator_command(kube: EmulatedCluster, tmp_path: pathlib.Path) -> None:
    """The real entry point in a subprocess: login, Lease, kopf, metrics, liveness, clean shutdown."""
    kube.create_object("v1/namespaces", {"metadata": {"name": NS}})
    kubeconfig = write_kubeconfig(kube, tmp_path / "kubeconfig")
    metrics_port, liveness_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC), "POD_NAME": "op-0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from klaxon.cli.main import main; sys.exit(main(sys.argv[1:]))",
        "operator",
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-port",
        str(metrics_port),
        "--health-port",
        str(liveness_port),
        "--lease-namespace",
        NS,
        "--evaluator-image",
        "img:cli",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        kube.create_object(AC, alert_config(), NS)
        kube.create_object(AR, rule("from-cli"), NS)
        await wait_condition(kube, AR, "from-cli", "True", timeout=20)
        assert kube.get_object(PR, "klaxon-from-cli", NS) is not None
        dep = await wait_for(lambda: kube.get_object("apps/v1/deployments", "klaxon-eval-default-0", NS))
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "img:cli"
        lease = kube.get_object("coordination.k8s.io/v1/leases", "klaxon-operator", NS)
        assert lease is not None and lease["spec"]["holderIdentity"] == "op-0", kube.list_objects(
            "coordination.k8s.io/v1/leases"
        )
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                text = await resp.text()
            assert 'klaxon_operator_reconciles_total{kind="AlertRule"' in text
            assert 'klaxon_operator_objects{kind="AlertRule",ready="True",reason="Ready"} 1.0' in text
            assert "klaxon_operator_reconcile_duration_seconds_bucket" in text
            assert "klaxon_operator_api_requests_total" in text

            async def alive() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{liveness_port}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(alive, timeout=10)
            async with session.get(f"http://127.0.0.1:{liveness_port}/readyz") as resp:
                assert resp.status == 200 and (await resp.json()) == {"ready": True}
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=20)
        assert proc.returncode == 0
        lease = kube.get_object("coordination.k8s.io/v1/leases", "klaxon-operator", NS)
        assert lease is not None and not lease["spec"].get("holderIdentity")  # released for the standby
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        output = (await proc.stdout.read()).decode() if proc.stdout else ""
        if proc.returncode not in (0, None):
            print(output)


def test_klaxon_operator_flags_and_chart_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from klaxon.cli.main import build_parser
    from klaxon.cli.operator_cmd import _namespaces

    args = build_parser().parse_args(
        ["operator", "--webhook-cert-dir", "/certs", "-n", "a", "-n", "b", "--no-leader-election"]
    )
    assert args.webhook_cert_dir == "/certs" and _namespaces(args) == ["a", "b"] and not args.leader_election
    # the chart configures the pod through KLAXON_* variables (charts/klaxon/templates/deployment.yaml)
    for name, value in {
        "NAMESPACES": "x, y",
        "LEADER_ELECTION": "false",
        "HEALTH_PORT": "9000",
        "METRICS_PORT": "0",
        "WEBHOOK_CERT_DIR": "/etc/klaxon/webhook-tls",
        "WEBHOOK_PORT": "9444",
        "LEASE_NAME": "klaxon",
        "LEASE_DURATION_SECONDS": "20",
        "POD_NAMESPACE": "ops",
        "EVALUATOR_IMAGE": "img:9",
        "IMAGE_PULL_SECRETS": "reg1,reg2",
        "LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(f"KLAXON_{name}", value)
    args = build_parser().parse_args(["operator"])
    assert _namespaces(args) == ["x", "y"] and not args.leader_election
    assert (args.health_port, args.metrics_port, args.webhook_port) == (9000, 0, 9444)
    assert args.webhook_cert_dir == "/etc/klaxon/webhook-tls" and args.lease_namespace == "ops"
    assert (args.lease_name, args.lease_duration, args.evaluator_image) == ("klaxon", 20.0, "img:9")
    assert args.image_pull_secrets == "reg1,reg2" and args.log_format == "json"


async def test_a_status_write_for_an_object_deleted_meanwhile_is_dropped_quietly(kube: EmulatedCluster) -> None:
    """A reconcile that outlives its object (deleted while it ran) must not fail: the real API server
    answers 404 to the status patch, and the DELETED watch event that follows says the rest."""
    from klaxon.kube.client import KubeClient
    from klaxon.operator.conditions import Cond
    from klaxon.operator.rules import write_status
    from klaxon.operator.runtime import Runtime

    client = await KubeClient.connect(client_configuration(kube))
    rt = Runtime(Options(kube_configuration=client_configuration(kube)), client)
    try:
        gone = {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertConfig",
            "metadata": {"name": "gone", "namespace": "team-a", "uid": "u-1", "generation": 1},
        }
        await write_status(rt, "AlertConfig", gone, {}, [Cond("Ready", True, "Ready", "ok")], {})
        assert ("AlertConfig", "team-a", "gone", "u-1") not in rt.written
    finally:
        await client.close()


def test_a_bad_environment_value_fails_only_the_command_that_reads_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from klaxon.cli.main import build_parser

    monkeypatch.setenv("KLAXON_API_RETRY_SECONDS", "abc")
    assert build_parser().parse_args(["validate", "x.yaml"]).command == "validate"
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["operator"])
    assert refused.value.code == 2
    assert "argument --api-retry-seconds: invalid float value: 'abc'" in capsys.readouterr().err
