"""`klaxon preview` end to end: JSON against the schema, the plot, progress, limits and errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from klaxon.cli.main import main
from klaxon.cli.preview import ProgressBar
from klaxon.preview.data import RawSeries
from klaxon.preview.run import FileSource, load_rule, run_preview
from klaxon.preview.schema import preview_schema

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
DATA = EX / "data"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["preview", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("rule", "data", "name"),
    [
        ("10-model-accuracy.yaml", "10-model-accuracy.csv", None),
        ("12-api-latency-dynamic.yaml", "12-api-latency.csv", None),
        ("13-generic-rules.yaml", "13-high-error-rate.json", "high-error-rate"),
        ("13-generic-rules.yaml", "13-heartbeat.om", "heartbeat-missing"),
        ("13-generic-rules.yaml", "13-slow-and-failing.json", "slow-and-failing"),
    ],
)
def test_json_output_validates_against_the_schema(
    capsys: pytest.CaptureFixture[str], rule: str, data: str, name: str | None
) -> None:
    argv = [str(EX / rule), "--data", str(DATA / data), "-o", "json"] + (["--rule", name] if name else [])
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert err == ""  # piped: no progress bar
    doc = json.loads(out)
    jsonschema.validate(doc, preview_schema())
    assert doc["series"] and all(s["points"] for s in doc["series"])
    assert doc["summary"]["alarms"] >= 1


def test_schema_rejects_a_broken_document(capsys: pytest.CaptureFixture[str]) -> None:
    _code, out, _ = run_cli(
        capsys, str(EX / "10-model-accuracy.yaml"), "--data", str(DATA / "10-model-accuracy.csv"), "-o", "json"
    )
    doc = json.loads(out)
    del doc["series"][0]["points"][0]["isAlarmActive"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, preview_schema())


def test_text_output_lists_transitions_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, str(EX / "12-api-latency-dynamic.yaml"), "--data", str(DATA / "12-api-latency.csv"))
    assert code == 0
    assert "2026-06-24T14:11:33Z  Firing -> Firing  level=critical  Escalated" in out
    assert "points=719 violations=35 alarms=1 timeInAlarm=39m lowConfidence=2" in out


def test_plot_png_has_the_expected_size_and_is_not_blank(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    png = tmp_path / "preview.png"
    code, _, err = run_cli(
        capsys, str(EX / "12-api-latency-dynamic.yaml"), "--data", str(DATA / "12-api-latency.csv"), "--plot", str(png)
    )
    assert code == 0, err
    img = mpimg.imread(png)
    assert img.shape[:2] == (800, 1200)  # two series: 2 x 400 px high, 1200 px wide
    rgb = img[..., :3]
    assert rgb.std() > 0.05
    # alarm shading (light red) and violation markers (red) are present
    red = (rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
    assert red.sum() > 50


def test_plot_svg_and_panel_cap(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from klaxon.preview.plot import plot

    rng = np.random.default_rng(0)
    t = np.arange(1782259200.0, 1782259200.0 + 3600, 60)
    series = [RawSeries({"host": f"h{i:02d}"}, t, rng.normal(0.9, 0.01, t.size)) for i in range(9)]
    ref = load_rule(EX / "10-model-accuracy.yaml")
    # the example's selector would drop these: use a rule on the same metric without one
    spec = ref.spec.model_copy(
        update={"query": ref.spec.query.model_copy(update={"selector": None, "scope": None, "split_by": ["host"]})}
    )
    res = run_preview(type(ref)(ref.name, ref.namespace, spec, ref.source), FileSource(series).fetch, series_limit=8)
    assert res.total_members == 9 and len(res.series) == 8
    svg = plot(res, tmp_path / "p.svg")
    text = svg.read_text()
    assert text.startswith("<?xml") and "3 more series not shown" in text


def test_series_limit_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["preview", str(EX / "10-model-accuracy.yaml"), "--data", "x.csv", "--series-limit", "51"])
    assert "out of range (allowed: 1..50)" in capsys.readouterr().err
    code, out, _ = run_cli(
        capsys, str(EX / "10-model-accuracy.yaml"), "--data", str(DATA / "10-model-accuracy.csv"), "--series-limit", "2"
    )
    assert code == 0
    assert "showing 2 of 3 series" in out and "edge-cam-03" not in out


def test_errors_exit_1_with_file_and_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,device_id,value\n1782259200,edge-cam-01,0.9\n1782259200,edge-cam-01,0.9\n")
    code, _, err = run_cli(capsys, str(EX / "10-model-accuracy.yaml"), "--data", str(bad))
    assert code == 1
    assert f"{bad}:3: duplicate timestamp" in err
    code, _, err = run_cli(capsys, str(EX / "11-night-person-detection.yaml"), "--data", str(bad))
    assert code == 1 and "event rule" in err


def test_from_to_override(capsys: pytest.CaptureFixture[str]) -> None:
    _code, out, _ = run_cli(
        capsys,
        str(EX / "10-model-accuracy.yaml"),
        "--data",
        str(DATA / "10-model-accuracy.csv"),
        "--from",
        "2026-06-24T12:00:00Z",
        "--to",
        "2026-06-24T16:00:00Z",
        "-o",
        "json",
    )
    doc = json.loads(out)
    assert (doc["from"], doc["to"]) == ("2026-06-24T12:00:00Z", "2026-06-24T16:00:00Z")
    trs = [(tr["time"], tr["to"]) for s in doc["series"] for tr in s["transitions"]]
    assert trs == [("2026-06-24T14:05:30Z", "Pending"), ("2026-06-24T14:10:30Z", "Inactive")]


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_only_on_a_terminal() -> None:
    piped, term = _Tty(False), _Tty(True)
    for stream in (piped, term):
        bar = ProgressBar(stream)
        bar(0, 2, "loading")
        bar(2, 2, "done")
    assert piped.getvalue() == ""
    assert "[" + "#" * 30 + "] 2/2 done" in term.getvalue()


def test_composite_per_operand_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from klaxon.preview.data import load_file

    files = []
    for s in load_file(DATA / "13-slow-and-failing.json"):
        name = "errors" if s.labels.get("operand") == "errors" else "latency"
        p = tmp_path / f"{name}.csv"
        p.write_text("timestamp,value\n" + "".join(f"{int(t)},{v}\n" for t, v in zip(s.times, s.values, strict=True)))
        files += ["--data", f"{name}={p}"]
    code, out, err = run_cli(capsys, str(EX / "13-generic-rules.yaml"), "--rule", "slow-and-failing", *files)
    assert code == 0, err
    rule_part = out.split("rule slow-and-failing (logic of the operands)")[1]
    assert "2026-06-24T04:10:51Z  Inactive -> Firing  level=warning  Triggered" in rule_part
    assert "2026-06-24T04:20:51Z  Firing -> Inactive  level=-  Recovered" in rule_part
