"""Reconcile benchmark: N AlertRules → time until every one is Ready with its PrometheusRule.

    PYTHONPATH=operator python bench/reconcile.py --kubeconfig PATH [--rules N]   # a real cluster
    PYTHONPATH=operator python bench/reconcile.py --emulated [--rules N]          # kmock emulator

The operator runs in this process (Klaxon's registry and settings, watching one fresh
namespace); ``--emulated`` starts the kube_harness emulator in a *separate* process, so the
RSS measured here is the operator's (plus this script's small client). API requests are
counted at aiohttp level in this process: kopf's and Klaxon's clients both go through it;
the benchmark's own polling client is subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests")]

import aiohttp  # noqa: E402

REQUESTS: Counter[str] = Counter()
_original_request = aiohttp.ClientSession._request


async def _counting_request(self: aiohttp.ClientSession, method: str, *args: Any, **kwargs: Any) -> Any:
    REQUESTS[method.upper()] += 1
    return await _original_request(self, method, *args, **kwargs)


aiohttp.ClientSession._request = _counting_request  # type: ignore[method-assign]

from e2e.scenario import install_crds, running_klaxon  # noqa: E402
from klaxon.kube.client import KubeClient, Ref  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rule(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "klaxon.dev/v1alpha1",
        "kind": "AlertRule",
        "metadata": {"name": f"bench-{i:05d}"},
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


async def all_ready(kube: KubeClient, ns: str, n: int) -> tuple[int, int]:
    rules = await kube.list(Ref("klaxon.dev/v1alpha1", "alertrules", ns))
    ready = sum(
        1
        for r in rules
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (r.get("status") or {}).get("conditions") or []
        )
    )
    prs = await kube.list(Ref("monitoring.coreos.com/v1", "prometheusrules", ns))
    return ready, len(prs)


def operator_requests(kube: KubeClient) -> int:
    return sum(REQUESTS.values()) - kube.requests


async def bench(kubeconfig: str, n: int, timeout: float, keep: bool) -> dict[str, Any]:
    kube = await KubeClient.connect(kubeconfig=kubeconfig)
    ns = f"klaxon-bench-{secrets.token_hex(3)}"
    result: dict[str, Any] = {"rules": n}
    try:
        await install_crds(kube)
        await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await kube.create(
            {
                "apiVersion": "klaxon.dev/v1alpha1",
                "kind": "AlertConfig",
                "metadata": {"name": "default", "namespace": ns},
                "spec": {
                    "prometheus": {"url": "http://prometheus:9090"},
                    "prometheusRule": {"labels": {"release": "kps"}},
                },
            }
        )
        rss_before = rss_mib()
        async with running_klaxon(kube, (ns,)) as runner:
            await asyncio.sleep(1.0)
            base = operator_requests(kube)
            started = time.monotonic()
            for i in range(n):
                await kube.create({**rule(i), "metadata": {**rule(i)["metadata"], "namespace": ns}})
            created = time.monotonic() - started
            while True:
                ready, prs = await all_ready(kube, ns, n)
                if ready == n and prs == n:
                    break
                if time.monotonic() - started > timeout:
                    raise SystemExit(f"timeout: {ready}/{n} Ready, {prs}/{n} PrometheusRules")
                await asyncio.sleep(0.25)
            elapsed = time.monotonic() - started
            reconcile_requests = operator_requests(kube) - base
            by_method = dict(REQUESTS)
            await asyncio.sleep(5.0)  # steady state: what an idle operator costs
            idle = operator_requests(kube) - base - reconcile_requests
            restart_base = operator_requests(kube)
            restart_started = time.monotonic()
            await runner.restart()
            await asyncio.sleep(3.0)
            restart_requests = operator_requests(kube) - restart_base
            restart_ready, _ = await all_ready(kube, ns, n)
            result.update(
                {
                    "create_seconds": round(created, 2),
                    "all_ready_seconds": round(elapsed, 2),
                    "rules_per_second": round(n / elapsed, 1),
                    "operator_requests": reconcile_requests,
                    "requests_per_rule": round(reconcile_requests / n, 2),
                    "requests_by_method_incl_bench_client": by_method,
                    "idle_requests_5s": idle,
                    "restart_requests_3s": restart_requests,
                    "restart_seconds": round(time.monotonic() - restart_started, 2),
                    "ready_after_restart": restart_ready,
                    "peak_rss_mib": round(rss_mib(), 1),
                    "rss_before_operator_mib": round(rss_before, 1),
                }
            )
    finally:
        if not keep:
            await kube.delete(Ref("v1", "namespaces", None, ns))
        await kube.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--kubeconfig", help="kubeconfig of the cluster to benchmark against")
    target.add_argument(
        "--emulated", action="store_true", help="start the kmock-based emulator in a subprocess"
    )
    parser.add_argument("--rules", type=int, default=50, help="number of AlertRules (default 50)")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds to wait for all Ready (default 600)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark namespace")
    args = parser.parse_args()
    server = None
    kubeconfig = args.kubeconfig
    if args.emulated:
        kubeconfig = os.path.join(tempfile.mkdtemp(), "kubeconfig")
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "e2e" / "emulated_apiserver.py"), kubeconfig],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        server.stdout.readline()  # ready
    try:
        result = asyncio.run(bench(kubeconfig, args.rules, args.timeout, args.keep))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    result["target"] = "emulated (kube_harness/kmock)" if args.emulated else "cluster"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
