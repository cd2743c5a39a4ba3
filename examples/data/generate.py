"""Generate the preview sample data for the example rules (deterministic: seeded numpy).

Run from the repository root:  python examples/data/generate.py
The incidents each rule catches are listed in examples/data/README.md.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent
DAY = 86400
WEEK = 7 * DAY
PREVIEW_DAY = int(datetime(2026, 6, 24, tzinfo=UTC).timestamp())  # a Wednesday
H = 3600


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_accuracy() -> None:
    """10-model-accuracy: 4 devices, 06:00-18:00 at 1-minute resolution; edge-cam-04 is out of scope."""
    rng = np.random.default_rng(10)
    t = np.arange(PREVIEW_DAY + 6 * H, PREVIEW_DAY + 18 * H, 60)
    rows: list[list[str]] = []
    for dev in ("edge-cam-01", "edge-cam-02", "edge-cam-03", "edge-cam-04"):
        v = 0.93 + rng.normal(0, 0.008, t.size)
        if dev == "edge-cam-02":  # incident: accuracy 0.78 from 10:00 for 40 minutes
            v[(t >= PREVIEW_DAY + 10 * H) & (t < PREVIEW_DAY + 10 * H + 40 * 60)] = 0.78 + rng.normal(0, 0.008)
        if dev == "edge-cam-01":  # a 7-minute dip: Pending, but not for 5 minutes
            v[(t >= PREVIEW_DAY + 14 * H) & (t < PREVIEW_DAY + 14 * H + 7 * 60)] -= 0.13
        if dev == "edge-cam-04":  # out of the rule's scope: never previewed
            v[(t >= PREVIEW_DAY + 12 * H) & (t < PREVIEW_DAY + 13 * H)] = 0.5
        rows += [[rfc3339(a), "defect-detector-v7", "scratch", dev, f"{b:.4f}"] for a, b in zip(t, v, strict=True)]
    rows.sort(key=lambda r: (r[0], r[3]))
    with (OUT / "10-model-accuracy.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "model_id", "class", "device_id", "value"])
        w.writerows(rows)


def api_latency() -> None:
    """12-api-latency-dynamic: p95 latency of two hosts on five Wednesdays at 1-minute resolution.

    The four weeks before 2026-06-24 cover 08:00-20:00 (the baseline reads only the same time of
    week); 2026-06-24 covers 06:00-20:00 so the state has two hours of warmup before `from`.
    api-2 has an incident 14:00-14:30; api-1 is redeployed at 12:00 (version label changes).
    """
    rng = np.random.default_rng(12)
    rows: list[list[str]] = []
    for host, base in (("api-1", 170.0), ("api-2", 185.0)):
        for week in range(4, -1, -1):
            day = PREVIEW_DAY - week * WEEK
            t = np.arange(day + (6 if week == 0 else 8) * H, day + 20 * H, 60)
            tod = (t - day) / DAY
            v = base + 60 * np.sin(2 * np.pi * (tod - 0.25)) + rng.normal(0, 3) + rng.normal(0, 6, t.size)
            if week == 0 and host == "api-2":
                v[(t >= day + 14 * H) & (t < day + 14 * H + 10 * 60)] += 35
                v[(t >= day + 14 * H + 10 * 60) & (t < day + 14 * H + 30 * 60)] += 90
            for a, b in zip(t, v, strict=True):
                version = "1.5.0" if host == "api-1" and a >= PREVIEW_DAY + 12 * H else "1.4.2"
                rows.append([str(int(a)), "checkout", host, version, f"{b:.1f}"])
    rows.sort(key=lambda r: (int(r[0]), r[2]))
    with (OUT / "12-api-latency.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "service", "host", "version", "value"])
        w.writerows(rows)


def high_error_rate() -> None:
    """13 high-error-rate (an expr rule): a Prometheus query_range response, 00:00-06:00."""
    rng = np.random.default_rng(131)
    t = np.arange(PREVIEW_DAY, PREVIEW_DAY + 6 * H, 60)
    v = np.maximum(0, 20 + rng.normal(0, 5, t.size))
    v[(t >= PREVIEW_DAY + 3 * H) & (t < PREVIEW_DAY + 3 * H + 15 * 60)] += 130  # 15 minutes of 5xx
    doc = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[int(a), f"{b:.0f}"] for a, b in zip(t, v, strict=True)]}],
        },
    }
    text = json.dumps(doc, indent=None).replace("], [", "],\n[")
    (OUT / "13-high-error-rate.json").write_text(text + "\n")


def heartbeat() -> None:
    """13 heartbeat-missing (absence): OpenMetrics, a sample a minute, silent 02:00-02:45."""
    t = np.arange(PREVIEW_DAY, PREVIEW_DAY + 6 * H, 60)
    t = t[(t < PREVIEW_DAY + 2 * H) | (t >= PREVIEW_DAY + 2 * H + 45 * 60)]
    lines = ["# TYPE batch_exporter_heartbeat gauge"]
    lines += [f'batch_exporter_heartbeat{{job="batch-exporter"}} 1 {int(a)}' for a in t]
    lines.append("# EOF")
    (OUT / "13-heartbeat.om").write_text("\n".join(lines) + "\n")


def slow_and_failing() -> None:
    """13 slow-and-failing (composite): both operands in one query_range-shaped JSON file, 00:00-06:00.

    (A top-level JSON list would be read by `klaxon validate examples` as a manifest, so the
    simple `[{"labels", "samples"}]` shape is exercised by the tests instead.)
    """
    rng = np.random.default_rng(133)
    t = np.arange(PREVIEW_DAY, PREVIEW_DAY + 6 * H, 60)
    lat = 0.3 + rng.normal(0, 0.02, t.size)
    err = np.abs(0.01 + rng.normal(0, 0.003, t.size))
    lat[(t >= PREVIEW_DAY + 1 * H) & (t < PREVIEW_DAY + 1 * H + 10 * 60)] = 0.8  # slow, not failing
    lat[(t >= PREVIEW_DAY + 4 * H) & (t < PREVIEW_DAY + 4 * H + 30 * 60)] = 0.9  # slow ...
    err[(t >= PREVIEW_DAY + 4 * H + 10 * 60) & (t < PREVIEW_DAY + 4 * H + 20 * 60)] = 0.12  # ... and failing
    doc = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"__name__": "http_request_duration_p95_seconds", "service": "checkout"},
                    "values": [[int(a), f"{b:.4f}"] for a, b in zip(t, lat, strict=True)],
                },
                {
                    "metric": {"operand": "errors"},
                    "values": [[int(a), f"{b:.4f}"] for a, b in zip(t, err, strict=True)],
                },
            ],
        },
    }
    text = json.dumps(doc).replace("], [", "],\n[")
    (OUT / "13-slow-and-failing.json").write_text(text + "\n")


if __name__ == "__main__":
    model_accuracy()
    api_latency()
    high_error_rate()
    heartbeat()
    slow_and_failing()
