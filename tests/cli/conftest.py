"""Fixtures of the CLI suite (tests/support/clirun.py)."""

from support.clirun import emulated_cluster, failing_server

__all__ = ["emulated_cluster", "failing_server"]
