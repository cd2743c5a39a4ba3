"""`--prometheus`: the same transitions as replaying the same samples from a file (real Prometheus)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

import klaxon.preview.prometheus
from klaxon.api.alertrule import Query
from klaxon.cli.main import main
from klaxon.compile.query import series_selector
from klaxon.preview.data import load_file

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
DATA = EX / "data"
T0 = (int(time.time()) // 3600 - 72) * 3600  # three days ago, on the hour: promtool backfills the past only


def test_preview_selects_with_the_one_promql_quoting() -> None:
    q = Query.model_validate(
        {"metric": "m", "selector": {"a": 'x"y\\z'}, "scope": {"dev": ["cam.1", "cam|2"]}, "window": "5m"}
    )
    assert series_selector(q) == 'm{a="x\\"y\\\\z",dev=~"cam\\\\.1|cam\\\\|2"}'
    assert series_selector(Query.model_validate({"expr": "sum(rate(x[5m]))"})) == "(sum(rate(x[5m])))"


def transitions(capsys: pytest.CaptureFixture[str], *argv: str) -> list[tuple[str, str, str, str, str | None, str]]:
    code = main(["preview", str(EX / "10-model-accuracy.yaml"), "-o", "json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    return [
        (s["member"], tr["time"], tr["from"], tr["to"], tr["level"], tr["reason"])
        for s in doc["series"]
        for tr in s["transitions"]
    ]


def test_prometheus_gives_the_same_transitions_as_the_file(
    prometheus_server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The model-accuracy example data (4 devices, one out of scope), moved to three days ago.
    raw = load_file(DATA / "10-model-accuracy.csv")
    shift = T0 - min(float(s.times[0]) for s in raw)
    series = [
        (
            {"__name__": "model_accuracy", **s.labels},
            [(float(t) + shift, float(v)) for t, v in zip(s.times, s.values, strict=True)],
        )
        for s in raw
    ]
    shifted = tmp_path / "shifted.csv"
    with shifted.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "__name__", "model_id", "class", "device_id", "value"])
        rows = [(t, lab) for lab, pts in series for t in pts]
        for (t, v), lab in sorted(rows, key=lambda r: (r[0][0], r[1]["device_id"])):
            w.writerow([int(t), lab["__name__"], lab["model_id"], lab["class"], lab["device_id"], v])
    prom = prometheus_server(series=series)
    window = ["--from", str(T0 + 300), "--to", str(T0 + 12 * 3600 - 60)]

    from_file = transitions(capsys, "--data", str(shifted), *window)
    from_prom = transitions(capsys, "--prometheus", prom.url, *window)
    assert from_prom == from_file
    # and they are the documented ones, moved by the same shift
    assert [(m, f, to) for m, _, f, to, _, _ in from_prom] == [
        ("device_id=edge-cam-01", "Inactive", "Pending"),
        ("device_id=edge-cam-01", "Pending", "Inactive"),
        ("device_id=edge-cam-02", "Inactive", "Pending"),
        ("device_id=edge-cam-02", "Pending", "Firing"),
        ("device_id=edge-cam-02", "Firing", "Inactive"),
    ]


def test_dynamic_rule_from_prometheus_reads_weeks_of_baseline_in_slices(
    prometheus_server, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """28 days of warmup: the value query runs in several range queries (11,000 points each at most),
    the baseline's raw samples in day-long range-vector queries; the same transitions as the file."""
    raw = load_file(DATA / "12-api-latency.csv")
    day = 1782280800.0  # 2026-06-24T06:00:00Z, the incident day's first sample
    shift = T0 - day  # a whole number of hours: the rule's grid stays where it is on the data
    series = [
        ({"__name__": "api_response_duration_p95_ms", **s.labels},
         [(float(t) + shift, float(v)) for t, v in zip(s.times, s.values, strict=True)])
        for s in raw
    ]
    shifted = tmp_path / "shifted.csv"
    with shifted.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "service", "host", "version", "value"])
        for lab, pts in series:
            for t, v in pts:
                w.writerow([int(t), lab["service"], lab["host"], lab["version"], v])
    prom = prometheus_server(series=series)
    window = ["--from", str(T0 + 2 * 3600), "--to", str(T0 + 14 * 3600 - 60)]

    def run(*argv: str) -> list[tuple[str, str, str, str, str | None, str]]:
        code = main(["preview", str(EX / "12-api-latency-dynamic.yaml"), "-o", "json", *argv, *window])
        out, err = capsys.readouterr()
        assert code == 0, err
        doc = json.loads(out)
        return [(s["member"], tr["time"], tr["from"], tr["to"], tr["level"], tr["reason"])
                for s in doc["series"] for tr in s["transitions"]]

    from_file = run("--data", str(shifted))
    before = prom.http_requests("/api/v1/query_range")
    from_prom = run("--prometheus", prom.url)
    assert from_prom == from_file
    # 28 days of warm-up and 12 hours at 1m: 41,000+ evaluations, 10,000 a range query
    assert prom.http_requests("/api/v1/query_range") - before == 5
    # the limit is the server's, not ours: one chunk past it is refused, and said in one line
    monkeypatch.setattr(klaxon.preview.prometheus, "RANGE_POINTS", 12_000)
    main(["preview", str(EX / "12-api-latency-dynamic.yaml"), *window, "--prometheus", prom.url])
    assert "exceeded maximum resolution of 11,000 points" in capsys.readouterr().err
    assert [(m, f, to, lv) for m, _, f, to, lv, _ in from_prom] == [  # examples/data/README.md
        ("host=api-2", "Inactive", "Firing", "warning"),
        ("host=api-2", "Firing", "Firing", "critical"),
        ("host=api-2", "Firing", "Firing", "warning"),
        ("host=api-2", "Firing", "Recovering", "warning"),
        ("host=api-2", "Recovering", "Inactive", None),
    ]


def test_prometheus_errors_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "preview",
            str(EX / "10-model-accuracy.yaml"),
            "--prometheus",
            "http://127.0.0.1:9",
            "--timeout",
            "2",
            "--from",
            str(T0),
            "--to",
            str(T0 + 600),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "http://127.0.0.1:9: query 'avg by (device_id) (avg_over_time(model_accuracy{" in err


def test_a_raw_sample_on_a_slice_boundary_is_read_once(prometheus_server) -> None:
    """Day-long range vectors back from the end: where a Prometheus includes both ends of a range,
    a sample on a boundary comes back in two slices; the baseline holds it once either way."""
    import asyncio

    import numpy as np

    from klaxon.preview.prometheus import RAW_SLICE_S, PrometheusFetch

    end = T0 + 2 * RAW_SLICE_S
    points = [(T0 + 60.0 * i, float(i)) for i in range(int((end - T0) // 60) + 1)]
    prom = prometheus_server(series=[({"__name__": "temp", "room": "lab"}, points)])
    (got,) = asyncio.run(PrometheusFetch(prom.url, 60.0)._raw(Query(metric="temp"), T0, end))
    assert bool(np.all(np.diff(got.times) > 0)), got.times[np.diff(got.times, prepend=-1) <= 0]
    inside = len([t for t, _ in points if T0 < t <= end])
    assert got.times[-1] == end and len(got.times) in (inside, inside + 1)  # (+1: the start, if included)
