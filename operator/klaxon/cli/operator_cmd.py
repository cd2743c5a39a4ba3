"""``klaxon operator``: kopf run with Klaxon's settings, metrics, health endpoints and leader election.

Every flag has a ``KLAXON_*`` environment default: that is how the chart configures the pod.
The health port serves ``/healthz`` (liveness: kopf's own liveness probe once kopf runs, plain
200 while a standby waits for the Lease) and ``/readyz`` (200 once this replica leads and kopf's
handlers and webhook are up), so only the active replica receives admission requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import uuid
from typing import Any

DEFAULT_IMAGE = "ghcr.io/klaxon-dev/klaxon:0.1.0"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"KLAXON_{name}") or default


def _env_bool(name: str, default: bool) -> bool:
    return _env(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the Klaxon operator (kopf) against a cluster",
        description="Reconcile AlertRules, AlertConfigs and NotificationChannels. Credentials come from "
        "--kubeconfig, the in-cluster service account, or the default kubeconfig, in that order. "
        "Every option defaults to its KLAXON_* environment variable (as the chart sets them).",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch only this namespace (repeatable; $KLAXON_NAMESPACES, comma-separated); "
        "default: all namespaces",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "8080")),
        help="prometheus metrics port ($KLAXON_METRICS_PORT, default 8080; 0 = off)",
    )
    p.add_argument(
        "--health-port",
        "--liveness-port",
        dest="health_port",
        type=int,
        default=int(_env("HEALTH_PORT", "8081")),
        help="port of /healthz and /readyz ($KLAXON_HEALTH_PORT, default 8081; 0 = off)",
    )
    p.add_argument(
        "--webhook-cert-dir",
        default=_env("WEBHOOK_CERT_DIR", "") or None,
        help="directory with tls.crt and tls.key: serve the validating webhook over HTTPS "
        "($KLAXON_WEBHOOK_CERT_DIR; default: no webhook, the CRDs' CEL rules still validate)",
    )
    p.add_argument(
        "--webhook-port",
        type=int,
        default=int(_env("WEBHOOK_PORT", "9443")),
        help="validating webhook port ($KLAXON_WEBHOOK_PORT, default 9443)",
    )
    p.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("LEADER_ELECTION", True),
        help="elect one active replica through a Lease ($KLAXON_LEADER_ELECTION, default on)",
    )
    p.add_argument(
        "--lease-namespace",
        default=_env("POD_NAMESPACE", os.environ.get("POD_NAMESPACE", "klaxon-system")),
        help="namespace of the Lease ($KLAXON_POD_NAMESPACE, default klaxon-system)",
    )
    p.add_argument(
        "--lease-name",
        default=_env("LEASE_NAME", "klaxon-operator"),
        help="name of the Lease ($KLAXON_LEASE_NAME, default klaxon-operator)",
    )
    p.add_argument(
        "--lease-duration",
        type=float,
        default=float(_env("LEASE_DURATION_SECONDS", "15")),
        help="seconds a Lease is valid without renewal ($KLAXON_LEASE_DURATION_SECONDS, default 15)",
    )
    p.add_argument(
        "--renew-deadline",
        type=float,
        default=float(_env("RENEW_DEADLINE_SECONDS", "10")),
        help="seconds the leader keeps failing to renew before it stops "
        "($KLAXON_RENEW_DEADLINE_SECONDS, default 10)",
    )
    p.add_argument(
        "--retry-period",
        type=float,
        default=float(_env("RETRY_PERIOD_SECONDS", "2")),
        help="seconds between acquire/renew attempts ($KLAXON_RETRY_PERIOD_SECONDS, default 2)",
    )
    p.add_argument(
        "--evaluator-image",
        default=_env("EVALUATOR_IMAGE", os.environ.get("KLAXON_IMAGE", DEFAULT_IMAGE)),
        help="image of evaluator Deployments unless an AlertConfig sets one ($KLAXON_EVALUATOR_IMAGE)",
    )
    p.add_argument(
        "--evaluator-image-pull-policy",
        default=_env("EVALUATOR_IMAGE_PULL_POLICY", "IfNotPresent"),
        help="imagePullPolicy of evaluator pods ($KLAXON_EVALUATOR_IMAGE_PULL_POLICY)",
    )
    p.add_argument(
        "--image-pull-secrets",
        default=_env("IMAGE_PULL_SECRETS", ""),
        help="comma-separated imagePullSecrets for evaluator pods ($KLAXON_IMAGE_PULL_SECRETS)",
    )
    p.add_argument("--resync", type=float, default=600.0, help="seconds between full resyncs (default 600)")
    p.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "INFO"), help="log level ($KLAXON_LOG_LEVEL, default INFO)"
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=_env("LOG_FORMAT", "text"),
        help="log format ($KLAXON_LOG_FORMAT, default text)",
    )
    p.set_defaults(func=run)


def _namespaces(args: argparse.Namespace) -> list[str]:
    if args.namespaces:
        return list(args.namespaces)
    return [n.strip() for n in _env("NAMESPACES", "").split(",") if n.strip()]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class Health:
    """/healthz and /readyz for the kubelet; liveness is kopf's own probe once kopf runs."""

    def __init__(self, webhook_port: int | None = None) -> None:
        self.kopf_liveness: str | None = None  # kopf's internal endpoint, once it runs
        self.kopf_task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        #: kopf reports ready before its webhook server listens: until it does, admission would fail
        self.webhook_port = webhook_port

    async def webhook_listening(self) -> bool:
        if self.webhook_port is None:
            return True
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.webhook_port), 1.0)
        except (TimeoutError, OSError):
            return False
        writer.close()
        return True

    async def start(self, port: int) -> Any:
        from aiohttp import ClientError, ClientSession, web

        async def healthz(_: web.Request) -> web.Response:
            if self.kopf_task is None:
                return web.json_response({"role": "standby"})
            if self.kopf_task.done():
                return web.json_response({"kopf": "exited"}, status=500)
            if self.kopf_liveness is None or not self.ready.is_set():
                return web.json_response({"kopf": "starting"})
            try:
                async with ClientSession() as session, session.get(self.kopf_liveness) as resp:
                    return web.Response(
                        status=resp.status, body=await resp.read(), content_type="application/json"
                    )
            except ClientError as exc:
                return web.json_response({"kopf": f"liveness unreachable: {exc}"}, status=500)

        async def readyz(_: web.Request) -> web.Response:
            ok = self.ready.is_set() and self.kopf_task is not None and not self.kopf_task.done()
            ok = ok and await self.webhook_listening()
            return web.json_response({"ready": ok}, status=200 if ok else 503)

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port).start()
        return runner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(args: argparse.Namespace) -> int:
    import kopf

    from ..kube.client import KubeClient
    from ..kube.lease import LeaderElector
    from ..operator.handlers import make_registry
    from ..operator.runtime import Options
    from ..operator.settings import configure

    options = Options(
        image=args.evaluator_image,
        image_pull_policy=args.evaluator_image_pull_policy,
        image_pull_secrets=tuple(s.strip() for s in args.image_pull_secrets.split(",") if s.strip()),
        kubeconfig=args.kubeconfig,
        context=args.context,
        resync_seconds=args.resync,
        namespaces=tuple(_namespaces(args)),
    )
    settings = configure(
        kopf.OperatorSettings(), webhook_cert_dir=args.webhook_cert_dir, webhook_port=args.webhook_port
    )
    registry = make_registry(options, login=True, webhook=args.webhook_cert_dir is not None)
    namespaces = _namespaces(args)
    health = Health(args.webhook_port if args.webhook_cert_dir is not None else None)
    health_runner = await health.start(args.health_port) if args.health_port else None
    elector: LeaderElector | None = None
    kube: KubeClient | None = None
    keeper: asyncio.Task[None] | None = None
    stop_flag = asyncio.Event()
    try:
        if args.leader_election:
            kube = await KubeClient.connect(kubeconfig=args.kubeconfig, context=args.context)
            identity = (
                os.environ.get("KLAXON_POD_NAME")
                or os.environ.get("POD_NAME")
                or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
            )
            elector = LeaderElector(
                kube,
                args.lease_namespace,
                args.lease_name,
                identity,
                duration=args.lease_duration,
                renew=args.retry_period,
                retry=args.retry_period,
                deadline=args.renew_deadline,
            )
            await elector.acquire()
            keeper = asyncio.create_task(elector.keep())
            keeper.add_done_callback(lambda _: stop_flag.set())
        health.kopf_liveness = f"http://127.0.0.1:{_free_port()}/healthz"
        health.kopf_task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                clusterwide=not namespaces,
                namespaces=namespaces,
                liveness_endpoint=health.kopf_liveness,
                stop_flag=stop_flag,
                ready_flag=health.ready,
            )
        )
        await health.kopf_task
    finally:
        if keeper is not None:
            keeper.cancel()
        if elector is not None:
            await elector.release()
        if kube is not None:
            await kube.close()
        if health_runner is not None:
            await health_runner.cleanup()
    return 1 if elector is not None and elector.lost.is_set() else 0


def run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler()
    if args.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=str(args.log_level).upper(), handlers=[handler])
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    return asyncio.run(serve(args))
