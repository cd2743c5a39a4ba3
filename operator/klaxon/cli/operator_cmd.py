"""``klaxon operator``: kopf run with Klaxon's settings, metrics, liveness and leader election."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import uuid

DEFAULT_IMAGE = "ghcr.io/klaxon-dev/klaxon:0.1.0"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the Klaxon operator (kopf) against a cluster",
        description="Reconcile AlertRules, AlertConfigs and NotificationChannels. Credentials come from "
        "--kubeconfig, the in-cluster service account, or the default kubeconfig, in that order.",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        metavar="NS",
        help="watch only this namespace (repeatable; glob patterns allowed); default: all",
    )
    p.add_argument(
        "--metrics-port", type=int, default=8080, help="prometheus metrics port (default 8080; 0 = off)"
    )
    p.add_argument(
        "--liveness-port",
        type=int,
        default=8081,
        help="port of kopf's liveness endpoint /healthz (default 8081; 0 = off)",
    )
    p.add_argument(
        "--webhook-cert-dir",
        help="directory with tls.crt and tls.key: serve the validating "
        "webhook over HTTPS (default: no webhook; the CRDs' CEL rules still validate)",
    )
    p.add_argument("--webhook-port", type=int, default=9443, help="validating webhook port (default 9443)")
    p.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="elect one active replica through a Lease (default: on)",
    )
    p.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "klaxon-system"),
        help="namespace of the Lease (default: $POD_NAMESPACE or klaxon-system)",
    )
    p.add_argument(
        "--lease-name", default="klaxon-operator", help="name of the Lease (default klaxon-operator)"
    )
    p.add_argument(
        "--evaluator-image",
        default=os.environ.get("KLAXON_IMAGE", DEFAULT_IMAGE),
        help="image of evaluator Deployments unless an AlertConfig sets one (default: $KLAXON_IMAGE)",
    )
    p.add_argument("--resync", type=float, default=600.0, help="seconds between full resyncs (default 600)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run)


async def _standby_liveness(port: int) -> contextlib.AsyncExitStack:
    """While waiting for the Lease, answer /healthz ourselves so standbys are not restarted."""
    from aiohttp import web

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app = web.Application()
    app.router.add_get("/healthz", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    stack = contextlib.AsyncExitStack()
    stack.push_async_callback(runner.cleanup)
    return stack


async def serve(args: argparse.Namespace) -> int:
    import kopf

    from ..kube.client import KubeClient
    from ..kube.lease import LeaderElector
    from ..operator.handlers import make_registry
    from ..operator.runtime import Options
    from ..operator.settings import configure

    options = Options(
        image=args.evaluator_image,
        kubeconfig=args.kubeconfig,
        context=args.context,
        resync_seconds=args.resync,
    )
    settings = configure(
        kopf.OperatorSettings(), webhook_cert_dir=args.webhook_cert_dir, webhook_port=args.webhook_port
    )
    registry = make_registry(options, login=True, webhook=args.webhook_cert_dir is not None)
    stop_flag: asyncio.Event | None = None
    elector: LeaderElector | None = None
    kube: KubeClient | None = None
    keeper: asyncio.Task[None] | None = None
    try:
        if args.leader_election:
            kube = await KubeClient.connect(kubeconfig=args.kubeconfig, context=args.context)
            identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
            elector = LeaderElector(kube, args.lease_namespace, args.lease_name, identity)
            standby = await _standby_liveness(args.liveness_port) if args.liveness_port else None
            try:
                await elector.acquire()
            finally:
                if standby is not None:
                    await standby.aclose()
            keeper = asyncio.create_task(elector.keep())
            stop_flag = elector.lost
        liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
        await kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=not args.namespaces,
            namespaces=args.namespaces,
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
        )
    finally:
        if keeper is not None:
            keeper.cancel()
        if elector is not None:
            await elector.release()
        if kube is not None:
            await kube.close()
    return 1 if elector is not None and elector.lost.is_set() else 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    return asyncio.run(serve(args))
