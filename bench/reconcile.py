"""Reconcile benchmark: N new AlertRules → every one Ready=True with its PrometheusRule, against
the floor a plain client sets on the same API server in the same run.

    python bench/reconcile.py --kubeconfig PATH [--rules N] [--runs R] [--restart]   # a real cluster
    python bench/reconcile.py --emulated [--rules N]                                # kmock emulator

Each run has two phases, in alternating order (A/B, B/A, ...), each in a fresh namespace:

* **operator**: ``klaxon operator`` as its own process (Klaxon's real registry and settings,
  watching the namespace, no leader election), one AlertConfig; the benchmark creates N
  AlertRules and waits (through watches) until every rule is Ready=True and its PrometheusRule
  exists. The operator's API requests are counted inside its process at aiohttp level (kopf's
  client and Klaxon's), by verb and resource; its CPU and RSS come from /proc.
* **floor**: the same N creates, and for each rule a plain aiohttp client does the minimum
  writes — POST the PrometheusRule the operator would write, merge-patch the rule's status the
  operator would write — with the operator's connection-pool size (100); the same watches
  decide when it is done.

``--restart`` then stops the operator and starts a new one over the N existing rules, and
counts its requests by verb until it has resumed every rule (no write is expected).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import platform
import secrets
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests")]

import aiohttp  # noqa: E402

from e2e.scenario import install_crds  # noqa: E402
from klaxon.kube.client import KubeClient, Ref  # noqa: E402

POOL = 100  # Klaxon's client (kubernetes-asyncio's default connection_pool_maxsize)
AR = Ref("klaxon.dev/v1alpha1", "alertrules", None)
PR = Ref("monitoring.coreos.com/v1", "prometheusrules", None)

# Runs `klaxon operator` with every aiohttp request counted and served on its metrics port.
OPERATOR = """
import sys, aiohttp
from prometheus_client import Counter
from klaxon.kube.client import _resource_of
C = Counter("bench_operator_http_requests", "requests by the operator", ["method", "resource"])
_req = aiohttp.ClientSession._request
async def _counted(self, method, url, *a, **k):
    path = str(url).split("?", 1)[0].split("://", 1)[-1].partition("/")[2]
    parts = path.split("/")
    sub = parts[-1] if len(parts) >= 2 and parts[-1] == "status" else ""
    watch = "watch=true" in str(url) or "watch=true" in str(k.get("params") or "")
    C.labels("WATCH" if watch else method.upper(), _resource_of("/" + path) + ("/" + sub if sub else "")).inc()
    return await _req(self, method, url, *a, **k)
aiohttp.ClientSession._request = _counted
from klaxon.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def rule(i: int, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": f"bench-{i:05d}", "namespace": ns},
        "spec": {
            "severity": "warning",
            "query": {
                "metric": "http_requests_errors_ratio",
                "selector": {"service": f"svc-{i}"},
                "window": "5m",
            },
            "condition": {"type": "threshold", "operator": "gt", "threshold": 0.05},
            "trigger": {"for": "5m"},
        },
    }


CONFIG_SPEC = {"prometheus": {"url": "http://prometheus:9090"}, "prometheusRule": {"labels": {"release": "kps"}}}


UID = "00000000-0000-4000-8000-000000000000"  # stands for the rule's uid until it is known


def floor_writes(body: dict[str, Any]) -> tuple[str, str]:
    """The PrometheusRule and the status patch the operator writes for ``body``, serialised (with
    :data:`UID` for the rule's uid: computed before the clock starts, the uid put in after create)."""
    from klaxon.api.alertconfig import AlertConfigSpec
    from klaxon.api.alertrule import AlertRuleSpec
    from klaxon.compile import compile_rule
    from klaxon.kube.apply import prepare
    from klaxon.operator.conditions import Cond, build_conditions, ready_from

    meta = {**body["metadata"], "uid": UID, "generation": 1}
    body = {**body, "metadata": meta}
    spec = AlertRuleSpec.model_validate(body["spec"])
    config = AlertConfigSpec.model_validate(CONFIG_SPEC)
    result = compile_rule(meta["name"], meta["namespace"], spec, config, meta["uid"])
    assert result.prometheus_rule is not None
    pr = prepare({**result.prometheus_rule, "metadata": {**result.prometheus_rule["metadata"],
                                                          "namespace": meta["namespace"]}}, body)
    hash_ = pr["metadata"]["annotations"]["klaxon.dev/input-hash"]
    conds = [
        Cond("Valid", True, "Valid", "the spec is valid"),
        Cond("Synced", True, "Applied", f"PrometheusRule {meta['namespace']}/{pr['metadata']['name']} "
             f"is up to date (input hash {hash_})"),
    ]
    conds.append(ready_from(conds, ok_message="the rule is in effect"))
    status = {
        "observedGeneration": meta.get("generation"),
        "conditions": build_conditions([], conds, meta.get("generation")),
        "engine": result.engine,
        "engineReasons": list(result.evaluator_reasons),
        "prometheusRuleRef": {"name": pr["metadata"]["name"], "namespace": meta["namespace"]},
    }
    return json.dumps(pr), json.dumps({"status": status})


class Raw:
    """A plain aiohttp client with the kubeconfig's server and credentials."""

    def __init__(self, kube: KubeClient) -> None:
        conf = kube.api.configuration
        self.base = conf.host.rstrip("/")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = (conf.api_key or {}).get("BearerToken") or (conf.api_key or {}).get("authorization")
        if token:
            self.headers["Authorization"] = token if token.lower().startswith("bearer") else f"Bearer {token}"
        ctx: ssl.SSLContext | bool = False
        if self.base.startswith("https"):
            ctx = ssl.create_default_context(cafile=conf.ssl_ca_cert) if conf.verify_ssl else False
            if isinstance(ctx, ssl.SSLContext) and conf.cert_file:
                ctx.load_cert_chain(conf.cert_file, conf.key_file)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL, ssl=ctx))
        self.requests = 0

    async def send(self, method: str, path: str, body: Any, ctype: str = "application/json") -> Any:
        self.requests += 1
        headers = {**self.headers, "Content-Type": ctype}
        data = body if isinstance(body, str) else json.dumps(body)
        async with self.session.request(method, self.base + path, data=data, headers=headers) as r:
            payload = await r.json()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {payload.get('message')}")
            return payload

    async def close(self) -> None:
        await self.session.close()


class Watcher:
    """Counts rules Ready=True and PrometheusRules present in a namespace, from watches."""

    def __init__(self, kube: KubeClient, ns: str, n: int) -> None:
        self.kube, self.ns, self.n = kube, ns, n
        self.ready: set[str] = set()
        self.prs: set[str] = set()
        self.done = asyncio.Event()
        self.done_at = 0.0
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for ref, on in ((AR, self._rule), (PR, self._pr)):
            scoped = Ref(ref.api_version, ref.plural, self.ns)
            _, version = await self.kube.list_with_version(scoped)
            self.tasks.append(asyncio.create_task(self._watch(scoped, version, on)))

    async def _watch(self, ref: Ref, version: str, on: Any) -> None:
        while True:
            async for kind, obj in self.kube.watch(ref, version):
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                if kind != "BOOKMARK":
                    on(kind, obj)

    def _rule(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        conds = (obj.get("status") or {}).get("conditions") or []
        if kind != "DELETED" and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            self.ready.add(name)
        self._check()

    def _pr(self, kind: str, obj: dict[str, Any]) -> None:
        (self.prs.discard if kind == "DELETED" else self.prs.add)(obj["metadata"]["name"])
        self._check()

    def _check(self) -> None:
        if len(self.ready) >= self.n and len(self.prs) >= self.n and not self.done.is_set():
            self.done_at = time.monotonic()
            self.done.set()

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def create_rules(raw: Raw, ns: str, n: int, then: Any = None) -> None:
    """POST the N rules, POOL at a time; ``then(created)`` runs right after each create."""
    sem = asyncio.Semaphore(POOL)

    async def one(i: int) -> None:
        async with sem:
            created = await raw.send("POST", Ref("klaxon.dev/v1alpha1", "alertrules", ns).path(), rule(i, ns))
        if then is not None:  # on its own pool, as the operator would
            await then(created)

    await asyncio.gather(*(one(i) for i in range(n)))


async def fresh_namespace(kube: KubeClient, prefix: str) -> str:
    ns = f"{prefix}-{secrets.token_hex(3)}"
    await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return ns


async def drop_namespace(kube: KubeClient, ns: str, timeout: float = 900) -> None:
    """Delete and wait until it is gone, so its garbage collection does not load the next phase."""
    await kube.delete(Ref("v1", "namespaces", None, ns))
    deadline = time.monotonic() + timeout
    while await kube.get(Ref("v1", "namespaces", None, ns)) is not None and time.monotonic() < deadline:
        await asyncio.sleep(1.0)


async def floor(kube: KubeClient, n: int, timeout: float) -> dict[str, Any]:
    ns = await fresh_namespace(kube, "klaxon-bench-floor")
    creator, raw = Raw(kube), Raw(kube)  # the benchmark's creates, and the floor's own pool
    watcher = Watcher(kube, ns, n)
    writes = {rule(i, ns)["metadata"]["name"]: floor_writes(rule(i, ns)) for i in range(n)}
    try:
        await watcher.start()
        started = time.monotonic()

        async def minimum(created: dict[str, Any]) -> None:
            name, uid = created["metadata"]["name"], created["metadata"]["uid"]
            pr, status = writes[name]
            await raw.send("POST", Ref(PR.api_version, PR.plural, ns).path(), pr.replace(UID, uid))
            path = Ref(AR.api_version, AR.plural, ns, name).path("status")
            await raw.send("PATCH", path, status, "application/merge-patch+json")

        await create_rules(creator, ns, n, minimum)
        await asyncio.wait_for(watcher.done.wait(), timeout)
        return {"seconds": round(watcher.done_at - started, 2), "requests": raw.requests}
    finally:
        await watcher.stop()
        await creator.close()
        await raw.close()
        await drop_namespace(kube, ns)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """``klaxon operator`` in its own process, its requests counted (see OPERATOR)."""

    def __init__(self, kubeconfig: str, ns: str) -> None:
        self.kubeconfig, self.ns = kubeconfig, ns
        self.metrics_port, self.health_port = _free_port(), _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # kept open for the operator's lifetime (its stdout), and kept afterwards for a look
        self.log = tempfile.NamedTemporaryFile(prefix="klaxon-bench-operator-", suffix=".log", delete=False)  # noqa: SIM115

    async def start(self, timeout: float = 120) -> float:
        started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", OPERATOR, "operator", "--kubeconfig", self.kubeconfig, "-n", self.ns,
             "--no-leader-election", "--metrics-port", str(self.metrics_port),
             "--health-port", str(self.health_port), "--log-level", "WARNING"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        async with aiohttp.ClientSession() as s:
            while time.monotonic() - started < timeout:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the operator exited ({self.proc.returncode}); log: {self.log.name}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(f"http://127.0.0.1:{self.health_port}/readyz") as r:
                        if r.status == 200:
                            return time.monotonic() - started
                await asyncio.sleep(0.1)
        raise SystemExit(f"the operator did not get ready in {timeout}s; log: {self.log.name}")

    async def metrics(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Counter samples by metric name, keyed by their label values."""
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = await r.text()
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for line in text.splitlines():
            if line.startswith("#") or "{" not in line:
                continue
            name, _, rest = line.partition("{")
            labels, _, value = rest.rpartition("}")
            values = tuple(part.split("=", 1)[1].strip('"') for part in labels.split(",") if "=" in part)
            out.setdefault(name, {})[values] = float(value)
        return out

    async def requests(self) -> Counter[str]:
        samples = (await self.metrics()).get("bench_operator_http_requests_total", {})
        return Counter({f"{m} {r}": int(v) for (m, r), v in samples.items()})

    async def resumed(self) -> int:
        samples = (await self.metrics()).get("klaxon_operator_reconciles_total", {})
        # any trigger: a config's own resume kicks its rules too, and the kicks coalesce
        return int(sum(v for (kind, _trigger), v in samples.items() if kind == "AlertRule"))

    def _proc_status(self, field: str) -> float:
        assert self.proc is not None
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss_mib(self) -> float:
        return round(self._proc_status("VmRSS"), 1)

    def peak_rss_mib(self) -> float:
        return round(self._proc_status("VmHWM"), 1)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def writes(counts: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in counts.items() if k.split()[0] in ("POST", "PUT", "PATCH", "DELETE")})


@contextlib.asynccontextmanager
async def operator_namespace(kube: KubeClient) -> AsyncIterator[str]:
    ns = await fresh_namespace(kube, "klaxon-bench")
    try:
        await kube.create({"apiVersion": "klaxon.dev/v1alpha1", "kind": "AlertConfig",
                           "metadata": {"name": "default", "namespace": ns}, "spec": CONFIG_SPEC})
        yield ns
    finally:
        await drop_namespace(kube, ns)


async def with_operator(kube: KubeClient, kubeconfig: str, n: int, timeout: float, restart: bool) -> dict[str, Any]:
    async with operator_namespace(kube) as ns:
        op = Operator(kubeconfig, ns)
        raw = Raw(kube)
        watcher = Watcher(kube, ns, n)
        result: dict[str, Any] = {}
        try:
            await op.start()
            await asyncio.sleep(2.0)  # the AlertConfig's first reconcile is not part of it
            await watcher.start()
            result["rss_idle_mib"] = op.rss_mib()
            base, cpu0 = await op.requests(), op.cpu_seconds()
            started = time.monotonic()
            await create_rules(raw, ns, n)
            result["create_seconds"] = round(time.monotonic() - started, 2)
            try:
                await asyncio.wait_for(watcher.done.wait(), timeout)
            except TimeoutError:
                raise SystemExit(f"timeout: {len(watcher.ready)}/{n} Ready, {len(watcher.prs)}/{n} "
                                 f"PrometheusRules; operator log {op.log.name}") from None
            counts = await op.requests() - base
            total = sum(counts.values())
            result.update(
                seconds=round(watcher.done_at - started, 2),
                cpu_seconds=round(op.cpu_seconds() - cpu0, 2),
                cpu_ms_per_rule=round((op.cpu_seconds() - cpu0) * 1000 / n, 2),
                requests=total,
                requests_per_rule=round(total / n, 2),
                requests_by_verb=dict(sorted(counts.items())),
                rss_mib=op.rss_mib(),
            )
            at_rest = await op.requests()
            await asyncio.sleep(5.0)
            result["idle_5s_requests"] = sum((await op.requests() - at_rest).values())
            result["rss_after_idle_mib"] = op.rss_mib()
            result["peak_rss_mib"] = op.peak_rss_mib()
            if restart:
                result["restart"] = await restart_operator(op, n, timeout)
            return result
        finally:
            op.stop()
            await watcher.stop()
            await raw.close()


async def restart_operator(op: Operator, n: int, timeout: float) -> dict[str, Any]:
    """A new operator over N existing, unchanged rules: how long until all are resumed, and what it sent."""
    op.stop()
    started = time.monotonic()
    ready_s = await op.start()
    while (resumed := await op.resumed()) < n and time.monotonic() - started < timeout:
        await asyncio.sleep(0.2)
    resumed_s = time.monotonic() - started
    counts = await op.requests()
    await asyncio.sleep(5.0)  # anything late (retries, debounced recounts) shows here
    counts = await op.requests()
    return {
        "ready_seconds": round(ready_s, 2),
        "all_resumed_seconds": round(resumed_s, 2),
        "resumed": resumed,
        "requests_by_verb": dict(sorted(counts.items())),
        "writes": dict(sorted(writes(counts).items())),
        "rss_mib": op.rss_mib(),
        "peak_rss_mib": op.peak_rss_mib(),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": round(statistics.median(values), 2), "max": max(values)}


async def bench(kubeconfig: str, n: int, runs: int, timeout: float, restart: bool, skip_floor: bool) -> dict[str, Any]:
    kube = await KubeClient.connect(kubeconfig=kubeconfig)
    out: dict[str, Any] = {
        "rules": n,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": [],
    }
    try:
        await install_crds(kube)
        for r in range(runs):
            run: dict[str, Any] = {"load_average_before": round(os.getloadavg()[0], 2)}
            floor_first = r % 2 == 1  # interleave: O/F, F/O, O/F ...
            if floor_first and not skip_floor:
                run["floor"] = await floor(kube, n, timeout)
            run["operator"] = await with_operator(kube, kubeconfig, n, timeout, restart and r == runs - 1)
            if not floor_first and not skip_floor:
                run["floor"] = await floor(kube, n, timeout)
            run["load_average_after"] = round(os.getloadavg()[0], 2)
            if "floor" in run:
                run["ratio"] = round(run["operator"]["seconds"] / run["floor"]["seconds"], 2)
            out["runs"].append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
        ops = [run["operator"] for run in out["runs"]]
        summary = {
            "operator_seconds": spread([o["seconds"] for o in ops]),
            "requests_per_rule": spread([o["requests_per_rule"] for o in ops]),
            "cpu_ms_per_rule": spread([o["cpu_ms_per_rule"] for o in ops]),
            "rss_mib": spread([o["rss_mib"] for o in ops]),
            "load_average": spread([run["load_average_before"] for run in out["runs"]]),
        }
        if not skip_floor:
            summary["floor_seconds"] = spread([run["floor"]["seconds"] for run in out["runs"]])
            summary["ratio"] = spread([run["ratio"] for run in out["runs"]])
        out["summary"] = summary
    finally:
        await kube.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--kubeconfig", help="kubeconfig of the cluster to benchmark against")
    target.add_argument("--emulated", action="store_true",
                        help="start the kmock-based emulator in a subprocess (the default without --kubeconfig)")
    parser.add_argument("--rules", type=int, default=200, help="number of AlertRules (default 200)")
    parser.add_argument("--runs", type=int, default=1, help="repetitions, floor and operator interleaved (default 1)")
    parser.add_argument("--restart", action="store_true", help="restart the operator after the last run")
    parser.add_argument("--no-floor", action="store_true", help="skip the raw-client floor")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for all Ready (default 900)")
    args = parser.parse_args()
    server = None
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        kubeconfig = os.path.join(tempfile.mkdtemp(), "kubeconfig")
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "e2e" / "emulated_apiserver.py"), kubeconfig],
            stdout=subprocess.PIPE, text=True,
        )
        assert server.stdout is not None
        server.stdout.readline()  # ready
    try:
        result = asyncio.run(bench(kubeconfig, args.rules, args.runs, args.timeout, args.restart, args.no_floor))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    result["target"] = "cluster" if args.kubeconfig else "emulated (kube_harness/kmock, its own process)"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
