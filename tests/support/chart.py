"""Fixtures for the chart tests: the real helm binary, rendering, and Kubernetes schema validation.

helm: the real binary, found (or explained) by ``support.helm_bin``: ``make helm`` fetches a
pinned copy into ``.tools/``. Without one, every test that needs helm is skipped with that
reason (and fails under ``CI=true``, where ``.ci/run`` must have installed it).

Kubernetes schemas: every rendered object is validated with kubernetes-validate for the oldest
Kubernetes the chart supports (``MIN_KUBE``, the chart's kubeVersion) and the newest it knows.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from support import helm_bin

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "klaxon"
# The chart's kubeVersion: the CRDs' CEL rules use fieldPath, which Kubernetes 1.28 introduced
# (1.27 refuses the CRDs: 'strict decoding error: unknown field ...fieldPath').
MIN_KUBE = "1.28"


def tools_dir() -> Path:
    path = Path(os.environ.get("KLAXON_TOOLS_DIR", REPO / ".tools"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def helm() -> Path:
    return require_helm()


def require_helm() -> Path:
    path, why = helm_bin.find()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the helm tests: {why}")
        pytest.skip(f"HELM MISSING, helm tests not run: {why}")
    return path


class HelmError(Exception):
    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


def run_helm(helm: Path, *args: str, values: dict[str, Any] | None = None, tmp: Path | None = None) -> str:
    cmd = [str(helm), *args]
    if values is not None:
        assert tmp is not None
        digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
        vf = tmp / f"values-{digest}.yaml"
        vf.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(vf)]
    env = {**os.environ, "HELM_CACHE_HOME": str(tools_dir() / "helm-home" / "cache"),
           "HELM_CONFIG_HOME": str(tools_dir() / "helm-home" / "config"),
           "HELM_DATA_HOME": str(tools_dir() / "helm-home" / "data")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise HelmError(proc.stderr)
    return proc.stdout


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def render(helm: Path, tmp_path: Path) -> Render:
    """Render the chart with values; returns the parsed documents (CRDs included on request)."""

    def _render(values: dict[str, Any] | None = None, *, crds: bool = False,
                namespace: str = "klaxon-system", release: str = "klaxon") -> list[dict[str, Any]]:
        args = ["template", release, str(CHART), "--namespace", namespace]
        if crds:
            args.append("--include-crds")
        out = run_helm(helm, *args, values=values or {}, tmp=tmp_path)
        return [d for d in yaml.safe_load_all(out) if d]

    return _render


@pytest.fixture
def render_error(helm: Path, tmp_path: Path) -> Callable[[dict[str, Any]], str]:
    """Render with values that must be rejected; returns helm's error output."""

    def _render_error(values: dict[str, Any]) -> str:
        try:
            run_helm(helm, "template", "klaxon", str(CHART), values=values, tmp=tmp_path)
        except HelmError as e:
            return e.stderr
        pytest.fail(f"helm accepted values it should reject: {values}")

    return _render_error


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


# --- Kubernetes schema validation ---------------------------------------------------------

Validator = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@pytest.fixture(scope="session")
def validators() -> dict[str, Validator]:
    """{version label: function(docs) -> results} for the oldest supported and the newest Kubernetes."""
    latest = kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version())

    def newest(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for doc in docs:
            try:
                out.append({"ok": True, "version": kubernetes_validate.validate(doc, latest, strict=True)})
            except kubernetes_validate.ValidationError as e:
                out.append({"ok": False, "error": ".".join(map(str, e.path)) + ": " + e.message})
            except Exception as e:  # SchemaNotFoundError etc. carry .message
                out.append({"ok": False, "error": f"{type(e).__name__}: {getattr(e, 'message', e)}"})
        return out

    def oldest(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [dict(r) for r in _in_process(docs, MIN_KUBE)]

    def _in_process(docs: list[dict[str, Any]], version: str) -> Iterator[dict[str, Any]]:
        for doc in docs:
            try:
                yield {"ok": True, "version": kubernetes_validate.validate(doc, version, strict=True)}
            except kubernetes_validate.ValidationError as e:
                yield {"ok": False, "error": ".".join(map(str, e.path)) + ": " + e.message}
            except Exception as e:  # SchemaNotFoundError etc. carry .message
                yield {"ok": False, "error": f"{type(e).__name__}: {getattr(e, 'message', e)}"}

    return {MIN_KUBE: oldest, latest: newest}
