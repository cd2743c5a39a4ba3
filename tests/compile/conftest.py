"""Options and fixtures of the compiler tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is required (Debian package prometheus)"
    return path


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    assert path, "prometheus is required (Debian package prometheus)"
    return path
