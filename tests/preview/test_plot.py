"""`--plot`: what the figure holds (its data, not its pixels) for the two-level dynamic example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from klaxon.preview.data import load_file
from klaxon.preview.run import FileSource, load_rule, run_preview
from klaxon.preview.units import value_label

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
DATA = EX / "data"

pytest.importorskip("matplotlib", reason="the plot extra is not installed (pip install 'klaxon-operator[plot]')")


def _lines(ax: object, label: str) -> list[np.ndarray]:
    return [np.asarray(ln.get_ydata(), float) for ln in ax.get_lines() if ln.get_label() == label]  # type: ignore[attr-defined]


def test_each_level_has_its_band_the_alarm_shows_its_level_and_the_axis_its_unit() -> None:
    from matplotlib.colors import to_rgba

    from klaxon.preview.plot import LEVEL_COLOURS, _spans, figure

    res = run_preview(
        load_rule(EX / "12-api-latency-dynamic.yaml"), FileSource(load_file(DATA / "12-api-latency.csv")).fetch
    )
    fig = figure(res)
    try:
        by_member = {s.member: (s.result, ax) for s, ax in zip(res.series, fig.axes, strict=True)}
        result, ax = by_member["host=api-2"]
        p = result.points
        assert ax.get_ylabel() == "api_response_duration_p95_ms (ms)"
        # both levels' bands, drawn from the replay's own per-level edges; critical's is the wider
        assert set(p.bands) == {"warning", "critical"}
        warn_up = _lines(ax, "warning band")
        crit_up = _lines(ax, "critical band")
        assert len(warn_up) == 1 and len(crit_up) == 1
        np.testing.assert_array_equal(
            warn_up[0], np.where(np.isfinite(p.bands["warning"][1]), p.bands["warning"][1], np.nan)
        )
        np.testing.assert_array_equal(
            crit_up[0], np.where(np.isfinite(p.bands["critical"][1]), p.bands["critical"][1], np.nan)
        )
        both = np.isfinite(warn_up[0]) & np.isfinite(crit_up[0])
        assert (
            both.sum() > 100
            and (crit_up[0][both] >= warn_up[0][both]).all()
            and (crit_up[0][both] > warn_up[0][both]).any()
        )
        # the alarm periods are coloured by level, and this member's alarm went warning -> critical -> warning
        levels = [lv for lv, alarm in zip(p.level, p.is_alarm_active, strict=True) if alarm]
        assert "critical" in levels and "warning" in levels
        legend = {t.get_text() for t in ax.get_legend().get_texts()}
        assert {"alarm: warning", "alarm: critical", "warning band", "critical band", "value"} <= legend
        for lv, colour in LEVEL_COLOURS.items():
            drawn = [pt for pt in ax.patches if pt.get_facecolor()[:3] == to_rgba(colour)[:3]]
            runs = _spans(p.is_alarm_active & np.asarray([x == lv for x in p.level]))
            assert len(drawn) == len(runs) >= 1, lv
        # api-1 never alarms: no alarm spans, the bands all the same
        quiet, ax1 = by_member["host=api-1"]
        assert not quiet.points.is_alarm_active.any()
        assert not any(t.get_text().startswith("alarm") for t in ax1.get_legend().get_texts())
        assert _lines(ax1, "warning band") and _lines(ax1, "critical band")
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_the_value_label_names_the_unit_from_the_metric_name() -> None:
    from klaxon.api.alertrule import Query

    def label(kind: str = "threshold", **q: object) -> str:
        return value_label(Query.model_validate({"window": "5m", **q}), kind)

    assert label(metric="api_response_duration_p95_ms") == "api_response_duration_p95_ms (ms)"
    assert label(metric="http_request_duration_seconds", aggregation="p99") == "p99(http_request_duration_seconds) (s)"
    assert label(metric="node_memory_free_bytes", aggregation="max") == "node_memory_free_bytes (bytes)"
    assert label(metric="model_accuracy") == "model_accuracy"
    assert label(metric="jobs_done_total", aggregation="count") == "count(jobs_done_total) (samples)"
    assert label("absence", metric="heartbeat") == "samples in the 5m window"
    assert label(expr="sum(rate(x[5m]))").startswith("value of sum(rate(x[5m]))")
