"""The operator process (``klaxon operator``): kopf with Klaxon's handlers, health endpoints,
metrics and leader election.

The health port serves ``/healthz`` (liveness: kopf's own liveness probe once kopf runs, plain
200 while a standby waits for the Lease) and ``/readyz`` (200 once this replica leads and kopf's
handlers and webhook are up), so only the active replica receives admission requests.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import socket
from dataclasses import dataclass, field

from aiohttp import ClientError, ClientSession, web

from ..kube.client import KubeClient
from ..kube.lease import LeaderElector, Leadership, pod_identity
from .runtime import Options


@dataclass(frozen=True)
class OperatorOptions:
    """What ``klaxon operator`` is told (the chart sets it through ``KLAXON_*`` variables)."""

    runtime: Options = field(default_factory=Options)
    #: watch only these namespaces; empty: all
    namespaces: tuple[str, ...] = ()
    #: Prometheus metrics port (0: off)
    metrics_port: int = 8080
    #: port of /healthz and /readyz (0: off)
    health_port: int = 8081
    #: directory with tls.crt and tls.key for the validating webhook (None: no webhook)
    webhook_cert_dir: str | None = None
    webhook_port: int = 9443
    leader_election: bool = True
    lease_namespace: str = "klaxon-system"
    lease_name: str = "klaxon-operator"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class KopfProbes:
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

    async def healthz(self, _: web.Request) -> web.Response:
        if self.kopf_task is None:
            return web.json_response({"role": "standby"})
        if self.kopf_task.done():
            return web.json_response({"kopf": "exited"}, status=500)
        if self.kopf_liveness is None or not self.ready.is_set():
            return web.json_response({"kopf": "starting"})
        try:
            async with ClientSession() as session, session.get(self.kopf_liveness) as resp:
                return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")
        except ClientError as exc:
            return web.json_response({"kopf": f"liveness unreachable: {exc}"}, status=500)

    async def readyz(self, _: web.Request) -> web.Response:
        ok = self.ready.is_set() and self.kopf_task is not None and not self.kopf_task.done()
        ok = ok and await self.webhook_listening()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def start(self, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port).start()
        return runner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TLS_READ_BUFFER = 32 * 1024


async def run_operator(options: OperatorOptions) -> int:
    """Run until kopf exits; 1 when the Lease was lost (the pod restarts as a standby)."""
    import kopf

    from .handlers import make_registry
    from .settings import configure

    # asyncio keeps a 256 KiB read buffer per TLS connection (tens of connections to the API
    # server: ~20 MiB resident); API responses stream through a smaller one just as well.
    asyncio.sslproto.SSLProtocol.max_size = min(asyncio.sslproto.SSLProtocol.max_size, TLS_READ_BUFFER)
    if options.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(options.metrics_port)
    settings = configure(
        kopf.OperatorSettings(), webhook_cert_dir=options.webhook_cert_dir, webhook_port=options.webhook_port
    )
    registry = make_registry(options.runtime, login=True, webhook=options.webhook_cert_dir is not None)
    probes = KopfProbes(options.webhook_port if options.webhook_cert_dir is not None else None)
    probes_runner = await probes.start(options.health_port) if options.health_port else None
    kube: KubeClient | None = None
    stop_flag = asyncio.Event()
    leadership = Leadership(None, stop_flag)
    try:
        if options.leader_election:
            kube = await KubeClient.connect(kubeconfig=options.runtime.kubeconfig, context=options.runtime.context)
            leadership = Leadership(_elector(kube, options), stop_flag)
            await leadership.acquire()
        probes.kopf_liveness = f"http://127.0.0.1:{_free_port()}/healthz"
        probes.kopf_task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                clusterwide=not options.namespaces,
                namespaces=list(options.namespaces),
                liveness_endpoint=probes.kopf_liveness,
                stop_flag=stop_flag,
                ready_flag=probes.ready,
            )
        )
        await probes.kopf_task
    finally:
        await leadership.release()
        if kube is not None:
            await kube.close()
        if probes_runner is not None:
            await probes_runner.cleanup()
    return 1 if leadership.lost else 0


def _elector(kube: KubeClient, options: OperatorOptions) -> LeaderElector:
    return LeaderElector(
        kube,
        options.lease_namespace,
        options.lease_name,
        pod_identity(),
        duration=options.lease_duration,
        renew=options.retry_period,
        retry=options.retry_period,
        deadline=options.renew_deadline,
    )

