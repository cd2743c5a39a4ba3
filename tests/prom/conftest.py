"""The Prometheus client needs a real Prometheus."""

from support.prometheus import prometheus_server

__all__ = ["prometheus_server"]
