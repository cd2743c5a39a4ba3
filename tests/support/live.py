"""Live parts for the fault suite: an exporter a real Prometheus scrapes, and `klaxon evaluator`
run as a process of its own (so it can be SIGKILLed, or started with a file-size limit).

    exporter = Exporter(); await exporter.start()          # exporter.target for Prometheus
    exporter.values["s1"] = 95.0                            # klaxon_fault_value{series="s1"} 95
    proc = EvaluatorProcess(kubeconfig, state_dir, tmp_path / "evaluator.log")
    await proc.start(); ...; proc.kill(); await proc.start()
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
import urllib.request
from pathlib import Path

from aiohttp import web

from support.prometheus import free_port

ROOT = Path(__file__).resolve().parents[2]
METRIC = "klaxon_fault_value"
#: Where the evaluator's code comes from: this checkout, or (to measure an older version against
#: the same faults) the `operator/` directory named by KLAXON_FAULTS_EVALUATOR_SOURCE.
SOURCE = Path(os.environ.get("KLAXON_FAULTS_EVALUATOR_SOURCE") or ROOT / "operator")


class Exporter:
    """Serves ``klaxon_fault_value{series=...}`` from ``values``; ``stop()`` makes scrapes fail
    (every series goes stale in Prometheus), ``start()`` serves again on the same port."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _metrics(self, _: web.Request) -> web.Response:
        lines = [f"# TYPE {METRIC} gauge"]
        lines += [f'{METRIC}{{series="{k}"}} {v!r}' for k, v in sorted(self.values.items())]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class EvaluatorProcess:
    """``python -m klaxon.cli evaluator`` against a kubeconfig; its log goes to ``log_path``
    (appended across restarts). ``fsize``: RLIMIT_FSIZE in bytes for the child (a full disk)."""

    def __init__(
        self,
        kubeconfig: Path,
        state_dir: Path,
        log_path: Path,
        *,
        config: str = "mon/main",
        tick: float = 0.2,
        fsize: int | None = None,
    ) -> None:
        self.kubeconfig, self.state_dir, self.log_path = kubeconfig, state_dir, log_path
        self.config, self.tick, self.fsize = config, tick, fsize
        self.metrics_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self._copier: asyncio.Task[None] | None = None
        self.starts = 0

    def _limit(self) -> None:  # runs in the child before exec
        if self.fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.fsize, self.fsize))

    async def start(self, ready_timeout: float = 60.0) -> None:
        """Start and wait for the first finished cycle (its /healthz answers 200)."""
        env = {**os.environ, "PYTHONPATH": str(SOURCE)}
        args = [
            *("evaluator", "--config", self.config, "--kubeconfig", str(self.kubeconfig)),
            *("--tick", str(self.tick), "--metrics-port", str(self.metrics_port), "--state-dir", str(self.state_dir)),
        ]
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
        # through a pipe: a file-size limit must hit the state dir, not the log
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "klaxon.cli", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env, cwd=ROOT, preexec_fn=self._limit,
        )
        self._copier = asyncio.create_task(self._copy(self.proc))
        deadline = asyncio.get_running_loop().time() + ready_timeout
        while asyncio.get_running_loop().time() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"evaluator exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            if "cycle:" in self.log().rsplit(f"--- start {self.starts}\n", 1)[-1]:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"evaluator not cycling after {ready_timeout}s:\n{self.log()[-3000:]}")

    async def _copy(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        with self.log_path.open("ab") as log:
            while line := await proc.stdout.readline():
                log.write(line)
                log.flush()

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, nothing recorded after this instant."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._copier is not None:
            await self._copier
        return code

    async def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._copier is not None:
            await self._copier
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample of ``/metrics`` (None when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#") or " " not in line:
                continue
            head, value = line.rsplit(" ", 1)
            name_part, _, rest = head.partition("{")
            got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
            if name_part == name and got == want:
                return float(value)
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
