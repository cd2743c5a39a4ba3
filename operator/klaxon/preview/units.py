"""What a rule's value is, for a plot's y-axis: ``metric (unit)`` from Prometheus' naming conventions."""

from __future__ import annotations

from klaxon.api.alertrule import Query

#: Prometheus' naming conventions: the unit is the metric name's last word.
UNIT_SUFFIXES = {
    "ms": "ms", "milliseconds": "ms", "seconds": "s", "bytes": "bytes", "ratio": "ratio",
    "percent": "%", "celsius": "°C", "volts": "V", "amperes": "A", "joules": "J", "grams": "g",
    "meters": "m", "hertz": "Hz", "total": "count", "count": "count", "errors": "count",
}


def value_label(q: Query, kind: str) -> str:
    """The y-axis label of a rule's value: ``metric (unit)`` when the name has a unit suffix."""
    if kind == "absence":
        return f"samples in the {q.window} window"
    if q.metric is None:
        expr = " ".join((q.expr or "").split())
        return f"value of {expr if len(expr) <= 40 else expr[:39] + '…'}"
    what = q.metric if q.aggregation in ("avg", "min", "max", "last", "sum") else f"{q.aggregation}({q.metric})"
    if q.aggregation == "count":
        return f"{what} (samples)"
    words = q.metric.split("_")
    unit = next((UNIT_SUFFIXES[w] for w in reversed(words[-2:]) if w in UNIT_SUFFIXES), None)
    return f"{what} ({unit})" if unit else what
