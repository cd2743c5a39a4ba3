"""Options every suite may read; pytest only registers options from the root conftest."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ from the compiler's current output instead of comparing",
    )
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


def pytest_report_header(config: pytest.Config) -> str:
    from support import helm_bin

    path, why = helm_bin.find()
    return f"helm: {path}" if path else f"helm: MISSING, the chart and helm tests will be skipped ({why})"


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
    """The long fault runs go only when asked for (``-m faults``; .ci/run does): deselected, not
    skipped, so a default run says how many it left out."""
    if "faults" in (config.getoption("markexpr", default="") or ""):
        return
    kept = [i for i in items if i.get_closest_marker("faults") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("faults") is not None])
        items[:] = kept
