"""Operator metrics (prometheus-client): reconciles, errors, durations, objects by condition."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "klaxon_operator_reconciles_total", "Reconciles by kind and trigger.", ["kind", "trigger"]
)
ERRORS = Counter(
    "klaxon_operator_reconcile_errors_total",
    "Reconciles that failed, by kind and reason.",
    ["kind", "reason"],
)
DURATION = Histogram(
    "klaxon_operator_reconcile_duration_seconds",
    "Duration of one reconcile.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OBJECTS = Gauge(
    "klaxon_operator_objects",
    "Objects by kind and Ready condition (status, reason).",
    ["kind", "ready", "reason"],
)
EVENTS = Counter(
    "klaxon_operator_events_total", "Kubernetes Events posted, by kind and reason.", ["kind", "reason"]
)

_states: dict[tuple[str, str, str], tuple[str, str]] = {}


@contextmanager
def measure(kind: str, trigger: str) -> Iterator[None]:
    RECONCILES.labels(kind, trigger).inc()
    started = time.monotonic()
    try:
        yield
    except Exception as exc:
        ERRORS.labels(kind, type(exc).__name__).inc()
        raise
    finally:
        DURATION.labels(kind).observe(time.monotonic() - started)


def record_ready(kind: str, namespace: str, name: str, status: str | None, reason: str = "") -> None:
    """Move one object between the gauge's series; ``status=None`` forgets it (deleted)."""
    key = (kind, namespace, name)
    old = _states.pop(key, None)
    if old is not None:
        OBJECTS.labels(kind, *old).dec()
    if status is not None:
        _states[key] = (status, reason)
        OBJECTS.labels(kind, status, reason).inc()
