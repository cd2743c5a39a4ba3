"""A real Alertmanager (Debian prometheus-alertmanager) receives the alerts; checked through its API."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import NS, channel, notification

BINARY = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
CONFIG = "route:\n  receiver: blackhole\n  group_wait: 1h\nreceivers:\n  - name: blackhole\n"


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "am.yml").write_text(CONFIG)
    proc = subprocess.Popen(
        [
            BINARY,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(url + "/-/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("alertmanager did not become ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def am_alerts(url: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(url + "/api/v2/alerts", params={"filter": 'alertname="api-latency"'}) as r,
    ):
        assert r.status == 200
        data: list[dict[str, Any]] = await r.json()
        return data


async def test_alertmanager_receives_firing_then_resolved(
    make_notifier: Any, alertmanager: str, secrets: Any
) -> None:
    secrets.secrets[(NS, "creds")]["am"] = "am-bearer-secret"
    notifier = await make_notifier()
    await notifier.set_channel(
        NS,
        "hook",
        channel(
            {
                "type": "alertmanager",
                "alertmanager": {"url": alertmanager, "bearerToken": {"name": "creds", "key": "am"}},
            }
        ),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    await notifier.handle(notification(time=now - timedelta(minutes=1)))
    await notifier.wait_idle(10)
    [alert] = await am_alerts(alertmanager)
    assert alert["labels"] == {
        "alertname": "api-latency",
        "namespace": NS,
        "severity": "critical",
        "level": "critical",
        "service": "svc-0",
    }
    assert alert["annotations"]["summary"] == "p99 latency above 500ms"
    assert alert["annotations"]["dedup_key"] == "api-latency:svc-0"
    assert alert["status"]["state"] == "active"
    assert datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")) == now - timedelta(minutes=1)

    await notifier.handle(notification(time=now, state_from="Recovering", state_to="Inactive"))
    await notifier.wait_idle(10)
    assert await am_alerts(alertmanager) == []  # Alertmanager lists only unresolved alerts
