"""Pytest fixtures; import them into a suite's conftest.py (``from kube_harness.fixtures import *``).

Suites must be packages (have ``__init__.py``) so that pytest puts ``tests/`` on
``sys.path`` and ``import kube_harness`` works without touching pyproject.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
import pytest_asyncio
from kubernetes_asyncio import client as k8s_client

from .clients import api_client
from .emulator import EmulatedCluster, emulated_cluster
from .runner import OperatorRunner, RunnerFactory, harness_settings


@pytest_asyncio.fixture()
async def kube() -> AsyncIterator[EmulatedCluster]:
    """A fresh emulated cluster per test; fails the test if the server answered any 5xx."""
    async with emulated_cluster() as cluster:
        yield cluster
        errors = cluster.errors_5xx()
        assert not errors, f"The emulated API answered {len(errors)} server errors: {errors[:3]!r}"


@pytest_asyncio.fixture()
async def kube_api(kube: EmulatedCluster) -> AsyncIterator[k8s_client.ApiClient]:
    """A kubernetes-asyncio ApiClient bound to ``kube``."""
    async with api_client(kube) as api:
        yield api


@pytest.fixture()
def kopf_settings() -> kopf.OperatorSettings:
    """Harness defaults; override the fixture in a suite to tweak them."""
    return harness_settings()


@pytest_asyncio.fixture()
async def kopf_runner(kube: EmulatedCluster,
                      kopf_settings: kopf.OperatorSettings) -> AsyncIterator[RunnerFactory]:
    """A factory: ``op = kopf_runner(registry); await op.start()``; stopped at teardown."""
    runners: list[OperatorRunner] = []

    def factory(registry: kopf.OperatorRegistry, **kwargs: Any) -> OperatorRunner:
        kwargs.setdefault('settings', kopf_settings)
        runner = OperatorRunner(kube, registry, **kwargs)
        runners.append(runner)
        return runner

    yield factory
    for runner in runners:
        await runner.stop()
