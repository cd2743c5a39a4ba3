"""``klaxon render``: manifests for the examples, and plain rule files a real Prometheus loads."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from klaxon.cli.main import main
from klaxon.cli.render import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _alert_rules() -> dict[str, dict[str, object]]:
    out = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "AlertRule":
                out[doc["metadata"]["name"]] = doc
    return out


def _render(*paths: str, output: Path | None = None, fmt: str = "prometheus-operator",
            ) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(paths, output_dir=str(output) if output else None, fmt=fmt, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_render_examples_one_prometheusrule_per_metric_rule(tmp_path: Path) -> None:
    code, _, err = _render(str(EXAMPLES), output=tmp_path)
    assert code == 0, err
    rules = _alert_rules()
    events = {n for n, d in rules.items() if "events" in d["spec"]}  # type: ignore[operator]
    written = sorted(tmp_path.glob("*.yaml"))
    names = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in written}
    assert names == {f"klaxon-{n}" for n in rules if n not in events}
    for name in events:
        assert f"AlertRule/{name}: event rule" in err and "no PrometheusRule" in err
    for p in written:
        manifest = yaml.safe_load(p.read_text())
        assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
        assert manifest["kind"] == "PrometheusRule"
        # the default AlertConfig's ruleSelector label reaches every manifest
        assert manifest["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert "klaxon.dev/input-hash" in manifest["metadata"]["annotations"]


def test_render_stdout_is_multi_document() -> None:
    code, out, _ = _render(str(EXAMPLES))
    assert code == 0
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert all(d["kind"] == "PrometheusRule" for d in docs) and len(docs) == 5


def test_render_via_cli_entry_point(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["render", str(EXAMPLES), "-o", str(tmp_path), "--format", "prometheus"]) == 0
    assert len(list(tmp_path.glob("*.rules.yaml"))) == 5
    assert "event rule" in capsys.readouterr().err


def test_render_reports_invalid_rules_and_keeps_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "in" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text(
        "apiVersion: klaxon.dev/v1alpha1\nkind: AlertRule\nmetadata: {name: sched}\nspec:\n"
        "  query: {metric: m}\n  condition: {threshold: 1}\n  evaluation: {engine: prometheus}\n"
        "  schedule: {windows: [{start: '08:00', end: '18:00'}]}\n---\n"
        "apiVersion: klaxon.dev/v1alpha1\nkind: AlertRule\nmetadata: {name: good}\nspec:\n"
        "  query: {metric: m}\n  condition: {threshold: 1}\n"
    )
    code, _, err = _render(str(bad.parent), output=tmp_path / "out")
    assert code == 1
    assert ("AlertRule/sched: spec.evaluation.engine: rule needs the evaluator for schedules in a time zone "
            "(spec.schedule) (allowed: auto, evaluator)") in err
    assert [p.name for p in (tmp_path / "out").glob("*.yaml")] == ["default_klaxon-good.yaml"]


def test_render_missing_path_is_usage_error() -> None:
    code, _, err = _render("/nonexistent/klaxon")
    assert code == 2 and "no such file" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_plain_rule_files_load_in_a_real_prometheus(tmp_path: Path, prometheus_bin: str,
                                                    promtool: str) -> None:
    rules_dir = tmp_path / "rules"
    code, _, err = _render(str(EXAMPLES), output=rules_dir, fmt="prometheus")
    assert code == 0, err
    files = sorted(rules_dir.glob("*.rules.yaml"))
    expected_groups = set()
    for f in files:
        check = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        expected_groups |= {g["name"] for g in yaml.safe_load(f.read_text())["groups"]}
    assert len(expected_groups) == 5

    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"evaluation_interval": "1m"},
        "rule_files": [str(rules_dir / "*.rules.yaml")],
    }))
    port = _free_port()
    proc = subprocess.Popen(
        [prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        loaded: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and loaded != expected_groups:
            assert proc.poll() is None, f"prometheus exited: {proc.stderr.read() if proc.stderr else ''}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=2) as resp:
                    body = json.load(resp)
                loaded = {g["name"] for g in body["data"]["groups"]}
            except OSError:
                pass
            time.sleep(0.2)
        assert loaded == expected_groups
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        assert all(r["health"] != "err" for r in rules)
        assert {r["name"] for r in rules if r["type"] == "alerting"} == {
            "ModelAccuracyLow", "HighErrorRate", "HeartbeatMissing", "SlowAndFailing"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
