"""Metrics of Klaxon's own Kubernetes client (served on the operator's and evaluator's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

API_REQUESTS = Counter(
    "klaxon_operator_api_requests_total",
    "Kubernetes API requests made by Klaxon's own client.",
    ["method", "resource", "code"],
)
API_LATENCY = Histogram(
    "klaxon_operator_api_request_duration_seconds",
    "Latency of Kubernetes API requests made by Klaxon.",
    ["method"],
)
API_RETRIES = Counter(
    "klaxon_operator_api_retries_total",
    "Kubernetes API requests Klaxon's client retried after a transport error, a timeout, 5xx or 429.",
    ["method", "resource"],
)
