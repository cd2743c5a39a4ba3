"""Opt-in end-to-end tests against a real Kubernetes API server.

Run: ``pytest tests/e2e --e2e --kubeconfig PATH``. Both flags are required: the suite never
guesses a cluster from $KUBECONFIG or ~/.kube/config. Without them every test here is
skipped with a loud reason; with only one of them the run is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from e2e.scenario import KubeClient

REFUSAL = "e2e tests need a real cluster: run `pytest tests/e2e --e2e --kubeconfig PATH`"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--e2e", default=False):
        return
    skip = pytest.mark.skip(reason=REFUSAL)
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kubeconfig(pytestconfig: pytest.Config) -> str:
    path = pytestconfig.getoption("--kubeconfig", default=None)
    if not path:
        pytest.fail(REFUSAL)
    return str(path)


@pytest_asyncio.fixture()
async def cluster(kubeconfig: str) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(kubeconfig=kubeconfig)
    try:
        yield client
    finally:
        await client.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    kubeconfig: Any = config.getoption("--kubeconfig", default=None)
    return [f"klaxon e2e: {'against ' + kubeconfig if kubeconfig else 'off (needs --e2e --kubeconfig PATH)'}"]
