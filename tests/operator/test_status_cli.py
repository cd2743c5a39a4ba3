"""`klaxon status` / `kubectl klaxon status` against the emulated API server."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from klaxon.cli.main import build_parser
from klaxon.cli.status import run_with
from klaxon.kube.client import KubeClient
from kube_harness.clients import write_kubeconfig
from support.operator_helpers import AR, rule


def seed(kube: Any) -> None:
    def status(state: str, ready: str, reason: str = "", series: int = 0) -> dict[str, Any]:
        return {
            "state": state,
            "activeSeriesCount": series,
            "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": ""}],
        }

    for ns, name, st in (
        ("team-a", "disk-free", status("Inactive", "True", "Applied")),
        ("team-a", "api-latency", status("Firing", "True", "Applied", series=2)),
        ("team-a", "broken", status("Inactive", "False", "ConfigNotFound")),
        ("team-b", "heartbeat", status("Pending", "True", "Applied")),
    ):
        body = rule(name)
        body["metadata"]["namespace"] = ns
        body["status"] = st
        kube.create_object(AR, body, ns, keep_status=True)


async def cli(kube_api: Any, *argv: str) -> int:
    return await run_with(build_parser().parse_args(["status", *argv]), KubeClient(kube_api))


async def test_one_namespace_firing_first_with_reasons(
    kube: Any, kube_api: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(kube)
    assert await cli(kube_api, "-n", "team-a") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "STATE", "LEVEL", "READY", "REASON", "LAST-EVAL", "SERIES"]
    assert [line.split()[1] for line in lines[1:4]] == ["api-latency", "broken", "disk-free"]
    assert "ConfigNotFound" in lines[2]
    assert lines[-1] == "3 rule(s): Firing 1, Inactive 2, NotReady 1"


async def test_all_namespaces_as_json(kube: Any, kube_api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    seed(kube)
    assert await cli(kube_api, "-A", "-o", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["namespace"], r["name"], r["state"]) for r in doc["rules"]] == [
        ("team-a", "api-latency", "Firing"),
        ("team-b", "heartbeat", "Pending"),
        ("team-a", "broken", "Inactive"),
        ("team-a", "disk-free", "Inactive"),
    ]
    assert doc["summary"] == {"Firing": 1, "Pending": 1, "Inactive": 2, "NotReady": 1}


async def test_kubectl_plugin_binary_against_the_cluster(kube: Any, tmp_path: Path) -> None:
    seed(kube)
    config = write_kubeconfig(kube, tmp_path / "kubeconfig")
    plugin = shutil.which("kubectl-klaxon") or str(Path(sys.executable).with_name("kubectl-klaxon"))
    proc = await asyncio.create_subprocess_exec(
        plugin,
        "status",
        "-A",
        "--kubeconfig",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[-1] == "4 rule(s): Firing 1, Pending 1, Inactive 2, NotReady 1"
    help_proc = await asyncio.create_subprocess_exec(plugin, "--help", stdout=asyncio.subprocess.PIPE)
    help_out, _ = await help_proc.communicate()
    assert help_out.decode().startswith("usage: kubectl klaxon")
