"""The operator process (``klaxon operator``): kopf with Klaxon's handlers, health endpoints,
metrics and leader election.

The health port serves ``/healthz`` (liveness: kopf's own liveness probe once kopf runs, plain
200 while a standby waits for the Lease, 500 at once when kopf's machinery failed) and
``/readyz`` (200 once this replica leads and kopf's handlers and webhook are up), so only the
active replica receives admission requests.

A leader that loses its Lease (e.g. it could not reach the API server for the renew deadline)
stops kopf and stands by again in the same process, so it leads again as soon as the server is
back. A fatal failure of kopf's machinery (a watcher or its orchestrator giving up) ends the
process with exit code 1 rather than leaving it up and idle.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, web

from ..kube.client import KubeClient
from ..kube.lease import LeaderElector, Leadership, pod_identity
from .runtime import Options

logger = logging.getLogger("klaxon.operator")

#: How long kopf may take to wind down (after a stop or a failure) before the process ends anyway.
WIND_DOWN_S = 20.0
EXIT_FAILED = 1


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
    #: how long kopf's own API requests (watches, its annotations) are retried before kopf gives
    #: up, which ends the process (see settings.configure)
    api_retry_seconds: float = 300.0


class KopfProbes:
    """/healthz and /readyz for the kubelet; liveness is kopf's own probe once kopf runs."""

    def __init__(self, webhook_port: int | None = None) -> None:
        self.kopf_liveness: str | None = None  # kopf's internal endpoint, once it runs
        self.kopf_task: asyncio.Task[None] | None = None
        #: why kopf's machinery failed (the process is about to exit)
        self.failure: str | None = None
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
        if self.failure is not None:
            return web.json_response({"kopf": "failed", "error": self.failure}, status=500)
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
        ok = self.failure is None and self.ready.is_set() and self.kopf_task is not None and not self.kopf_task.done()
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


class Stopping:
    """SIGTERM/SIGINT, and the stop flag of the current kopf run (kopf's own signal handlers
    would only stop that one run, and none are installed while a replica stands by)."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.flag = asyncio.Event()

    def next_run(self) -> asyncio.Event:
        self.flag = asyncio.Event()
        if self.requested.is_set():
            self.flag.set()
        return self.flag

    def request(self, signum: int | None = None) -> None:
        if signum is not None:
            logger.info("Signal %s received: stopping.", signal.Signals(signum).name)
        self.requested.set()
        self.flag.set()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self.request, signum)
            except (NotImplementedError, RuntimeError):  # not on this platform or loop
                return


TLS_READ_BUFFER = 32 * 1024


async def run_operator(options: OperatorOptions) -> int:
    """Run until told to stop (0) or until kopf's machinery fails (1); a lost Lease means standing
    by again, not exiting."""
    # asyncio keeps a 256 KiB read buffer per TLS connection (tens of connections to the API
    # server: ~20 MiB resident); API responses stream through a smaller one just as well.
    asyncio.sslproto.SSLProtocol.max_size = min(asyncio.sslproto.SSLProtocol.max_size, TLS_READ_BUFFER)
    if options.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(options.metrics_port)
    probes = KopfProbes(options.webhook_port if options.webhook_cert_dir is not None else None)
    probes_runner = await probes.start(options.health_port) if options.health_port else None
    stopping = Stopping()
    stopping.install()
    kube: KubeClient | None = None
    identity = pod_identity()  # the same across runs: a returning leader renews its own Lease at once
    try:
        if options.leader_election:
            kube = await KubeClient.connect(kubeconfig=options.runtime.kubeconfig, context=options.runtime.context)
        while not stopping.requested.is_set():
            stop_flag = stopping.next_run()
            elector = _elector(kube, options, identity) if kube is not None else None
            leadership = Leadership(elector, stop_flag)
            if not await leadership.acquire():
                break
            try:
                failed = await run_kopf(options, probes, stop_flag, stopping)
            finally:
                await leadership.release()
            if failed:
                return EXIT_FAILED
            if not leadership.lost:
                break
            logger.warning("The Lease was lost: the handlers stopped; standing by to lead again.")
    finally:
        if kube is not None:
            await kube.close()
        if probes_runner is not None:
            await probes_runner.cleanup()
    return 0


async def run_kopf(
    options: OperatorOptions, probes: KopfProbes, stop_flag: asyncio.Event, stopping: Stopping
) -> bool:
    """One run of kopf until ``stop_flag``, or until one of kopf's root tasks ends by itself, which
    is a failure of its machinery (a watcher or the orchestrator gave up): True then, and
    /healthz says so at once.

    kopf.operator() would wind down after such a failure, but may hang doing so (seen: 6+
    minutes up and idle with /healthz 500), so its root tasks are watched here and the process
    ends past ``WIND_DOWN_S``.
    """
    import kopf

    from .handlers import make_registry
    from .settings import configure

    settings = configure(
        kopf.OperatorSettings(),
        webhook_cert_dir=options.webhook_cert_dir,
        webhook_port=options.webhook_port,
        api_retry_seconds=options.api_retry_seconds,
    )
    registry = make_registry(options.runtime, login=True, webhook=options.webhook_cert_dir is not None)
    probes.ready.clear()
    probes.failure = None
    probes.kopf_liveness = f"http://127.0.0.1:{_free_port()}/healthz"
    existing = asyncio.all_tasks()  # kopf leaves these alone when it winds down
    roots = await kopf.spawn_tasks(
        registry=registry,
        settings=settings,
        standalone=True,
        clusterwide=not options.namespaces,
        namespaces=list(options.namespaces),
        liveness_endpoint=probes.kopf_liveness,
        stop_flag=stop_flag,
        ready_flag=probes.ready,
    )
    stopping.install()  # kopf installed its own signal handlers, which would stop this run only
    runner = asyncio.create_task(kopf.run_tasks(roots, ignored=existing), name="klaxon-kopf")
    probes.kopf_task = runner
    try:
        ended, _ = await asyncio.wait([*roots, runner], return_when=asyncio.FIRST_COMPLETED)
        failed = not stop_flag.is_set()
        if failed:
            probes.failure = _why(ended)
            logger.error("kopf's machinery failed (%s): the operator exits to be restarted.", probes.failure)
        try:
            await asyncio.wait_for(asyncio.shield(runner), WIND_DOWN_S)
        except TimeoutError:
            logger.error("kopf did not stop within %.0f s: exiting now.", WIND_DOWN_S)
            _exit_now()
        except Exception as exc:  # kopf re-raises what failed (kopf logged it)
            if not failed:
                probes.failure = _why([runner])
                logger.error("kopf failed while stopping: %s", exc)
                failed = True
        return failed
    finally:
        probes.kopf_task = None


def _why(tasks: Collection[asyncio.Task[Any]]) -> str:
    for task in tasks:
        if task.cancelled():
            return f"{task.get_name()} was cancelled"
        exc = task.exception()
        if exc is not None:
            return f"{task.get_name()}: {type(exc).__name__}: {exc}"[:500]
        return f"{task.get_name()} ended"
    return "unknown"


def _exit_now() -> None:
    """End the process although tasks still run (asyncio.run would wait for them forever)."""
    logging.shutdown()
    os._exit(EXIT_FAILED)


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


def configure_logging(level: str, fmt: str) -> None:
    """Root logging for the process: ``fmt`` is ``text`` or ``json`` (one object a line)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _elector(kube: KubeClient, options: OperatorOptions, identity: str) -> LeaderElector:
    return LeaderElector(
        kube,
        options.lease_namespace,
        options.lease_name,
        identity,
        duration=options.lease_duration,
        renew=options.retry_period,
        retry=options.retry_period,
        deadline=options.renew_deadline,
    )

