"""Fixtures of the preview suite: a real Prometheus over backfilled data."""

from support.prometheus import prometheus_server

__all__ = ["prometheus_server"]
