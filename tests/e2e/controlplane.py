"""A control plane of the test's own (../shared/tools/kube/cluster.sh on free ports, fresh etcd), so
a test may SIGKILL and restart its kube-apiserver: never the cluster of ``--kubeconfig``, which
others may share.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = Path.home() / ".cache" / "klaxon-k8s" / "bin"


def kube_tools() -> Path | None:
    """``shared/tools/kube`` beside the checkout or one of its parents (a worktree sits deeper)."""
    for parent in ROOT.parents:
        script = parent / "shared" / "tools" / "kube" / "cluster.sh"
        if script.is_file():
            return script.parent
    return None


def binaries() -> Path:
    own = os.environ.get("KLAXON_K8S_DIR")
    return Path(own) / "bin" if own and (Path(own) / "bin" / "kube-apiserver").exists() else DEFAULT_BIN


def _free_ports(count: int) -> list[int]:
    """``count`` consecutive free ports (etcd takes its port and the next one)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count > 65535:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return list(range(base, base + count))
    raise RuntimeError("no consecutive free ports")


def _ready(kubeconfig: Path) -> bool:
    kubectl = shutil.which("kubectl") or "kubectl"
    done = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
        capture_output=True,
        timeout=10,
        env={**os.environ, "KUBECTL_SKEW_WARNING": "false"},
    )
    return done.returncode == 0


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager started by this test; the API server can be
    killed and started again with the command line it was started with."""

    dir: Path
    env: dict[str, str]
    tools: Path
    command: list[str] | None = None

    @property
    def run(self) -> Path:
        return self.dir / "run"

    @property
    def kubeconfig(self) -> str:
        return str(self.run / "kubeconfig")

    def _pid(self) -> int:
        return int((self.run / "apiserver.pid").read_text().strip())

    def kill_apiserver(self) -> float:
        """SIGKILL the API server; returns when it is gone (time.monotonic() of the kill)."""
        pid = self._pid()
        self.command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):  # a restarted one is our child: reap it
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.01)
        return killed

    def start_apiserver(self) -> None:
        """Start the API server again as cluster.sh did (same command line, same log)."""
        assert self.command is not None, "kill_apiserver first"
        with (self.run / "apiserver.log").open("ab") as log:
            proc = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        (self.run / "apiserver.pid").write_text(f"{proc.pid}\n")
        self._child = proc

    def wait_ready(self, timeout: float = 90) -> float:
        """Block until /readyz answers ok; returns time.monotonic() of that moment."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ready(Path(self.kubeconfig)):
                return time.monotonic()
            time.sleep(0.1)
        raise AssertionError(f"kube-apiserver not ready after {timeout}s; see {self.run / 'apiserver.log'}")

    def stop(self) -> None:
        subprocess.run(["bash", str(self.tools / "cluster.sh"), "stop"], env=self.env, capture_output=True, timeout=60)
        child = getattr(self, "_child", None)
        if child is not None:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


def unavailable_reason() -> str | None:
    """Why a private control plane cannot be started here (None: it can)."""
    if kube_tools() is None:
        return "no shared/tools/kube/cluster.sh beside this checkout"
    for b in ("kube-apiserver", "kube-controller-manager"):
        if not (binaries() / b).exists():
            return f"no {binaries() / b}: run shared/tools/kube/build.sh"
    for tool in ("etcd", "kubectl", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@contextmanager
def control_plane() -> Iterator[ControlPlane]:
    """A fresh control plane on free ports under a temporary directory, stopped and removed afterwards."""
    reason = unavailable_reason()
    if reason is not None:
        raise AssertionError(f"cannot start a private control plane: {reason}")
    tools = kube_tools()
    assert tools is not None
    with tempfile.TemporaryDirectory(prefix="klaxon-k8s-") as tmp:
        base = Path(tmp)
        (base / "bin").symlink_to(binaries())
        api, etcd, _ = _free_ports(3)
        env = {
            **os.environ,
            "KLAXON_K8S_DIR": str(base),
            "KLAXON_K8S_PORT": str(api),
            "KLAXON_ETCD_PORT": str(etcd),
            "KUBECTL_SKEW_WARNING": "false",
        }
        plane = ControlPlane(base, env, tools)
        try:
            started = subprocess.run(
                ["bash", str(tools / "cluster.sh"), "start"], env=env, capture_output=True, text=True, timeout=180
            )
            if started.returncode != 0:
                log = (
                    (base / "run" / "apiserver.log").read_text(errors="replace")[-3000:]
                    if (base / "run" / "apiserver.log").exists()
                    else ""
                )
                raise AssertionError(f"cluster.sh start failed: {started.stderr}\n{log}")
            yield plane
        finally:
            plane.stop()
