"""Running klaxon commands as real subprocesses for the CLI suite: a clean environment, a stdout
nobody reads, an API server (the kube_harness emulator in its own process) and a local HTTP
server that fails the ways Prometheus and the API server fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.prometheus import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


@dataclass
class Result:
    argv: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.code}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"
        )


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No kubeconfig, no in-cluster variables, no debug switch: what a fresh shell has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "KLAXON_"))}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    closed_stdout: bool = False,
    timeout: float = 90.0,
    stop_after: float | None = None,
) -> Result:
    """Run a command; with ``closed_stdout`` its stdout is a pipe nobody reads (``| head -c 0``);
    with ``stop_after`` a long-running one gets SIGTERM after that many seconds (as a pod does)."""
    argv = list(argv)
    if stop_after is not None:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=stop_after)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, err = proc.communicate(timeout=timeout)
        return Result(argv, proc.returncode, out, err)
    if not closed_stdout:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte
    try:
        proc = subprocess.run(
            argv, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=timeout, check=False
        )
    finally:
        os.close(write_end)
    return Result(argv, proc.returncode, "", proc.stderr)


# --- an HTTP server failing as Prometheus and the API server do --------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """The first path segment picks the failure; the rest of the path is whatever the client asked."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        mode = self.path.strip("/").split("/")[0]
        if mode == "hang":
            time.sleep(6)
            self._answer(200, b"{}")
        elif mode == "html404":
            self._answer(404, b"<html><body>404 page not found</body></html>", "text/html")
        elif mode == "json500":
            self._answer(500, json.dumps({"status": "error", "errorType": "internal", "error": "boom"}).encode())
        elif mode == "json400":
            body = {"status": "error", "errorType": "bad_data", "error": 'parse error at char 1: unexpected "}"'}
            self._answer(400, json.dumps(body).encode())
        elif mode == "text503":
            self._answer(503, b"Service Unavailable", "text/plain")
        elif mode == "garbage":
            self._answer(200, b"hello, this is not JSON", "text/plain")
        elif mode == "wrongshape":
            body = {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": 5, "values": 7}]}}
            self._answer(200, json.dumps(body).encode())
        elif mode in ("k403", "k500", "k404"):
            code = int(mode[1:])
            status = {
                403: ("Forbidden", 'alertrules.klaxon.dev is forbidden: User "x" cannot list resource "alertrules"'),
                500: ("InternalError", "etcdserver: request timed out"),
                404: ("NotFound", "the server could not find the requested resource"),
            }[code]
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": status[0],
                "message": status[1],
                "code": code,
            }
            self._answer(code, json.dumps(body).encode())
        else:
            self._answer(404, b"unknown test mode", "text/plain")

    do_GET = do_POST = do_PATCH = do_PUT = _handle


@pytest.fixture(scope="session")
def failing_server() -> Iterator[str]:
    """Base URL of a server whose first path segment says how it fails (see ``_Handler``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def kubeconfig_for(server: str, path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "default"}}],
            }
        )
    )
    return path


# --- an API server: the kube_harness emulator in its own process ---------------------------------


@dataclass
class Cluster:
    kubeconfig: Path
    url: str

    def request(self, method: str, path: str, body: Any, ctype: str = "application/json") -> Any:
        req = urllib.request.Request(
            f"{self.url}{path}", method=method, data=json.dumps(body).encode(), headers={"Content-Type": ctype}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def apply(self, plural: str, body: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        ns = body["metadata"].get("namespace", "default")
        base = f"/apis/klaxon.dev/v1alpha1/namespaces/{ns}/{plural}"
        self.request("POST", base, body)
        if status is not None:
            name = body["metadata"]["name"]
            self.request("PATCH", f"{base}/{name}/status", {"status": status}, "application/merge-patch+json")


@pytest.fixture(scope="module")
def emulated_cluster() -> Iterator[Cluster]:
    workdir = Path(tempfile.mkdtemp(prefix="klaxon-cli-emu-"))
    kubeconfig = workdir / "kubeconfig"
    log = (workdir / "emulator.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "e2e" / "emulated_apiserver.py"), str(kubeconfig)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not kubeconfig.exists() or "server" not in kubeconfig.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"emulated API server did not start:\n{(workdir / 'emulator.log').read_text()}")
            time.sleep(0.1)
        import yaml

        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        yield Cluster(kubeconfig, server)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


__all__ = ["EXAMPLES", "ROOT", "Cluster", "Result", "clean_env", "free_port", "kubeconfig_for", "run"]
