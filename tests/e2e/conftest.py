"""Opt-in end-to-end tests against a real Kubernetes API server.

Run: ``pytest tests/e2e --e2e --kubeconfig PATH``. Both flags are required: the suite never
guesses a cluster from $KUBECONFIG or ~/.kube/config. Without them every test here is
skipped with a loud reason; with only one of them the run is refused.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from e2e.scenario import KubeClient  # noqa: E402

REFUSAL = "e2e tests need a real cluster: run `pytest tests/e2e --e2e --kubeconfig PATH`"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("klaxon-e2e", "Klaxon end-to-end tests (real cluster)")
    group.addoption(
        "--e2e",
        action="store_true",
        default=False,
        help="run the end-to-end tests against the cluster of --kubeconfig",
    )
    group.addoption(
        "--kubeconfig",
        action="store",
        default=None,
        help="kubeconfig of the cluster for --e2e (required; never taken from the environment)",
    )


def pytest_configure(config: pytest.Config) -> None:
    e2e = config.getoption("--e2e", default=False)
    kubeconfig = config.getoption("--kubeconfig", default=None)
    if e2e and not kubeconfig:
        raise pytest.UsageError("--e2e needs an explicit --kubeconfig PATH; refusing to pick a cluster")
    if kubeconfig and not e2e:
        raise pytest.UsageError("--kubeconfig is only used with --e2e; add --e2e to run against that cluster")
    if kubeconfig and not os.path.isfile(kubeconfig):
        raise pytest.UsageError(f"--kubeconfig {kubeconfig}: no such file")


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
