"""Argo CD health checks, run by a real Lua interpreter against sample objects.

Argo CD runs these scripts with a global ``obj`` (the live object) and reads ``status`` and
``message`` from the returned table (gopher-lua, Lua 5.1 semantics). The harness here does the
same with Debian's lua5.1 and lua5.4 (every test runs under both):
the object is turned into a Lua table literal, the script is loaded with dofile, and the result
printed. A firing AlertRule is Healthy: health says whether the object is in effect, and
firing is a rule doing its job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ARGO = REPO / "deploy" / "argocd"
KINDS = ["AlertRule", "AlertConfig", "NotificationChannel"]
LUA = shutil.which("lua5.4") or "/usr/bin/lua5.4"
INTERPRETERS = ["lua5.1", "lua5.4"]  # Argo CD's gopher-lua is Lua 5.1; 5.4 keeps us honest on newer Luas


@pytest.fixture(autouse=True, params=INTERPRETERS)
def interpreter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    path = shutil.which(request.param) or f"/usr/bin/{request.param}"
    monkeypatch.setattr(sys.modules[__name__], "LUA", path)
    return path


def lua_string(text: str) -> str:
    """A double-quoted Lua string: UTF-8 passes through, quotes, backslashes and controls are escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03d}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def lua_literal(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_string(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def run_health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    script = ARGO / "health.lua"
    harness = (f"obj = {lua_literal(obj)}\n"
               f"local hs = dofile({json.dumps(str(script))})\n"
               "io.write(hs.status, '\\n', hs.message or '')\n")
    proc = subprocess.run([LUA, "-"], input=harness, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    status, _, message = proc.stdout.partition("\n")
    return status, message


def sample(kind: str, generation: int = 3, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "klaxon.dev/v1alpha1", "kind": kind,
                           "metadata": {"name": "x", "namespace": "team-a", "generation": generation},
                           "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def ready(status: str, reason: str = "", message: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z", **extra}


def test_lua_is_there() -> None:
    assert Path(LUA).exists(), f"install Debian's {Path(LUA).name} (apt-get install lua5.1 lua5.4)"


def test_each_interpreter_really_runs(interpreter: str) -> None:
    proc = subprocess.run([LUA, "-"], input="io.write(_VERSION)", capture_output=True, text=True)
    assert proc.stdout == "Lua " + Path(interpreter).name.removeprefix("lua")


def test_literal_round_trips_awkward_strings() -> None:
    text = 'quote " backslash \\ newline \n tab \t bell \x07 unicode é ]] [['
    proc = subprocess.run([LUA, "-"], input=f"io.write({lua_literal(text)})", capture_output=True, text=True)
    assert proc.stdout == text


@pytest.mark.parametrize("kind", KINDS)
def test_ready_and_observed_is_healthy(kind: str) -> None:
    status, message = run_health(kind, sample(kind, status={
        "observedGeneration": 3, "conditions": [ready("True", "Accepted", "in effect")]}))
    assert (status, message) == ("Healthy", "Accepted: in effect")


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_is_progressing(kind: str) -> None:
    expected = ("Progressing", "Waiting for the Klaxon operator to report status")
    assert run_health(kind, sample(kind)) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_old_generation_is_progressing(kind: str) -> None:
    status, message = run_health(kind, sample(kind, generation=4, status={
        "observedGeneration": 3, "conditions": [ready("True", "Accepted", "in effect")]}))
    assert status == "Progressing"
    assert message == "Waiting for the Klaxon operator to observe generation 4 (observed 3)"


@pytest.mark.parametrize("kind", KINDS)
def test_missing_observed_generation_is_progressing(kind: str) -> None:
    status, _ = run_health(kind, sample(kind, status={"conditions": [ready("True")]}))
    assert status == "Progressing"


@pytest.mark.parametrize("kind", KINDS)
def test_stale_condition_is_progressing(kind: str) -> None:
    status, message = run_health(kind, sample(kind, generation=5, status={
        "observedGeneration": 5, "conditions": [ready("False", "Invalid", "old", observedGeneration=4)]}))
    assert (status, message) == ("Progressing", "Ready condition is from generation 4")


@pytest.mark.parametrize("kind", KINDS)
def test_not_ready_is_degraded_with_the_message(kind: str) -> None:
    msg = "spec.query.expr: parse error at char 7: unexpected \"}\" (allowed: a PromQL expression)"
    status, message = run_health(kind, sample(kind, status={
        "observedGeneration": 3, "conditions": [
            {"type": "Valid", "status": "False", "reason": "Invalid", "message": "other"},
            ready("False", "InvalidSpec", msg)]}))
    assert (status, message) == ("Degraded", "InvalidSpec: " + msg)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_is_progressing(kind: str) -> None:
    status, message = run_health(kind, sample(kind, status={
        "observedGeneration": 3, "conditions": [ready("Unknown", "Syncing", "")]}))
    assert (status, message) == ("Progressing", "Syncing: Readiness unknown")


@pytest.mark.parametrize("kind", KINDS)
def test_no_ready_condition_is_progressing(kind: str) -> None:
    status, _ = run_health(kind, sample(kind, status={"observedGeneration": 3, "conditions": []}))
    assert status == "Progressing"


def test_firing_rule_stays_healthy() -> None:
    status, message = run_health("AlertRule", sample("AlertRule", status={
        "observedGeneration": 3, "state": "Firing", "level": "critical",
        "conditions": [ready("True", "Accepted", "rule is in effect")]}))
    assert status == "Healthy"
    assert message == "Accepted: rule is in effect (state Firing)"


def test_object_without_generation_uses_the_condition() -> None:
    not_found = ready("False", "NoConfig", "AlertConfig default not found")
    obj = sample("AlertRule", status={"conditions": [not_found]})
    del obj["metadata"]["generation"]
    assert run_health("AlertRule", obj) == ("Degraded", "NoConfig: AlertConfig default not found")


def test_snippet_embeds_the_scripts() -> None:
    cm = yaml.safe_load((ARGO / "argocd-cm-snippet.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    data = cm["data"]
    for kind in KINDS:
        script = (ARGO / "health.lua").read_text()
        assert data[f"resource.customizations.health.klaxon.dev_{kind}"] == script, kind
        ignore = yaml.safe_load(data[f"resource.customizations.ignoreResourceUpdates.klaxon.dev_{kind}"])
        assert ignore == {"jsonPointers": ["/status"]}
    assert data["resource.ignoreResourceUpdatesEnabled"] == "true"


