"""A real Prometheus for tests: backfilled series, optional rule files, start/stop at will.

    def test_x(prometheus_server):
        prom = prometheus_server(series=[({"__name__": "m", "dev": "a"}, [(t, 1.0), ...])])
        prom.url            # http://127.0.0.1:PORT
        prom.stop(); prom.start()

Samples are written as OpenMetrics and turned into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics``; blocks must lie in the past (older than the
head block, ~2h), so use timestamps 1-30 days ago. Import the fixture into a conftest:
``from support.prometheus import prometheus_server``.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

Labels = Mapping[str, str]
Points = Sequence[tuple[float, float]]
SeriesSpec = tuple[Labels, Points]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def openmetrics(series: Sequence[SeriesSpec]) -> str:
    """OpenMetrics text (gauges) for the series; each series' labels must carry `__name__`."""
    families: dict[str, list[SeriesSpec]] = {}
    for labels, points in series:
        name = labels.get("__name__")
        if not name:
            raise ValueError(f"series {dict(labels)} has no __name__")
        families.setdefault(name, []).append((labels, points))
    lines: list[str] = []
    for name in sorted(families):
        lines.append(f"# TYPE {name} gauge")
        for labels, points in families[name]:
            rest = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()) if k != "__name__")
            head = f"{name}{{{rest}}}" if rest else name
            for ts, value in sorted(points):
                lines.append(f"{head} {_fmt_value(value)} {float(ts):.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for Prometheus' web config, via the C library's crypt(3) (no extra package).

    `crypt` is deprecated from Python 3.11 and gone in 3.13; glibc/libxcrypt support `$2b$`.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    salt = "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(22))
    hashed = crypt.crypt(password, f"$2b$05${salt}")
    if not hashed or not hashed.startswith("$2b$"):
        raise RuntimeError("crypt(3) on this system cannot make bcrypt hashes")
    return hashed


def self_signed_cert(
    workdir: Path, host: str = "127.0.0.1", san: str | None = None, name: str = "tls"
) -> tuple[Path, Path]:
    """(cert, key) PEM files of a self-signed certificate for `host` (its own CA), made by openssl."""
    cert, key = workdir / f"{name}.crt", workdir / f"{name}.key"
    subprocess.run(
        [
            shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={host}",
            "-addext", f"subjectAltName={san or f'IP:{host}'}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """One Prometheus process over a backfilled data directory; stop()/start() keep the data and port."""

    def __init__(
        self,
        workdir: Path,
        series: Sequence[SeriesSpec] = (),
        rules: Mapping[str, Any] | str | None = None,
        evaluation_interval: str = "1s",
        basic_auth: tuple[str, str] | None = None,
        tls: bool = False,
        server_name: str | None = None,
        mtls: bool = False,
        scrape: Sequence[str] = (),
        scrape_interval: str = "1s",
    ) -> None:
        """``server_name``: the certificate names only that DNS name (not 127.0.0.1); ``mtls``: clients
        must present ``client_cert`` / ``client_key`` (a self-signed certificate that is its own CA);
        ``scrape``: ``host:port`` targets scraped every ``scrape_interval`` (live data)."""
        self.workdir = workdir
        self.basic_auth = basic_auth
        self.ca_file: Path | None = None
        self.client_cert: Path | None = None
        self.client_key: Path | None = None
        self.server_name = server_name
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"
        if series:
            om = workdir / "data.om"
            om.write_text(openmetrics(series))
            res = subprocess.run(
                [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(om), str(self.data_dir)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if res.returncode != 0:
                raise RuntimeError(f"promtool failed ({res.returncode}): {res.stderr or res.stdout}")
        config: dict[str, Any] = {"global": {"evaluation_interval": evaluation_interval, "scrape_interval": "1m"}}
        if scrape:
            config["scrape_configs"] = [
                {
                    "job_name": "live",
                    "scrape_interval": scrape_interval,
                    "scrape_timeout": scrape_interval,
                    "static_configs": [{"targets": list(scrape)}],
                }
            ]
        if rules is not None:
            rules_path = workdir / "rules.yml"
            rules_path.write_text(rules if isinstance(rules, str) else json.dumps(rules))
            config["rule_files"] = [str(rules_path)]
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(json.dumps(config))  # JSON is YAML
        self.web_config_path: Path | None = None
        if basic_auth is not None or tls:
            web: dict[str, Any] = {}
            if basic_auth is not None:
                web["basic_auth_users"] = {basic_auth[0]: bcrypt_hash(basic_auth[1])}
            if tls:
                if server_name:
                    cert, key = self_signed_cert(workdir, server_name, f"DNS:{server_name}")
                else:
                    cert, key = self_signed_cert(workdir)
                self.ca_file = cert
                web["tls_server_config"] = {"cert_file": str(cert), "key_file": str(key)}
                if mtls:
                    self.client_cert, self.client_key = self_signed_cert(
                        workdir, "klaxon-evaluator", "DNS:klaxon-evaluator", name="client"
                    )
                    web["tls_server_config"].update(
                        client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(self.client_cert)
                    )
            self.web_config_path = workdir / "web.yml"
            self.web_config_path.write_text(json.dumps(web))

    def _open(self, path: str, timeout: float) -> Any:
        """urlopen of `path` on the server, with its credentials and CA."""
        req = urllib.request.Request(f"{self.url}{path}")
        if self.basic_auth is not None:
            token = base64.b64encode(f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file is not None else None
        if ctx is not None and self.server_name:
            ctx.check_hostname = False  # the harness' own readiness probe; the CA is still verified
        if ctx is not None and self.client_cert is not None:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return urllib.request.urlopen(req, timeout=timeout, context=ctx)

    def start(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--storage.tsdb.path={self.data_dir}",
                f"--config.file={self.config_path}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=100y",
                *([f"--web.config.file={self.web_config_path}"] if self.web_config_path else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with self._open("/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown at all (``start()`` brings it back on the same port and data)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def self_metrics(self) -> str:
        """The server's own /metrics text."""
        with self._open("/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def http_requests(self, handler: str) -> float:
        """`prometheus_http_requests_total{handler=...}` summed over status codes."""
        total = 0.0
        for line in self.self_metrics().splitlines():
            if line.startswith("prometheus_http_requests_total{") and f'handler="{handler}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


PrometheusFactory = Callable[..., PrometheusServer]


@pytest.fixture
def prometheus_server() -> Iterator[PrometheusFactory]:
    """Factory fixture: ``prometheus_server(series=[...], rules=None)`` returns a started server."""
    if not (Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()):
        pytest.fail("prometheus/promtool binaries are required for these tests")
    servers: list[PrometheusServer] = []
    dirs: list[str] = []

    def make(
        series: Sequence[SeriesSpec] = (),
        rules: Mapping[str, Any] | str | None = None,
        evaluation_interval: str = "1s",
        basic_auth: tuple[str, str] | None = None,
        tls: bool = False,
        server_name: str | None = None,
        mtls: bool = False,
        scrape: Sequence[str] = (),
        scrape_interval: str = "1s",
    ) -> PrometheusServer:
        d = tempfile.mkdtemp(prefix="klaxon-prom-")
        dirs.append(d)
        server = PrometheusServer(
            Path(d), series, rules, evaluation_interval, basic_auth, tls, server_name, mtls, scrape, scrape_interval
        )
        servers.append(server)
        server.start()
        return server

    yield make
    for s in servers:
        s.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
