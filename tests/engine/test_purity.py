"""The engine is a pure core: importing any of its modules pulls in no Kubernetes, HTTP or API-model packages."""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

OPERATOR_SRC = Path(__file__).resolve().parents[2] / "operator"
ENGINE_DIR = OPERATOR_SRC / "klaxon" / "engine"
FORBIDDEN = {"kopf", "kubernetes", "kubernetes_asyncio", "aiohttp", "pydantic", "yaml"}


def engine_modules() -> list[str]:
    return ["klaxon.engine"] + [f"klaxon.engine.{m.name}" for m in pkgutil.iter_modules([str(ENGINE_DIR)])]


def imported_forbidden(modules: list[str]) -> str:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_every_engine_module_imports_only_stdlib_and_numpy() -> None:
    modules = engine_modules()
    assert len(modules) > 5  # the walk found the package's modules
    assert imported_forbidden(modules) == ""


def test_the_check_sees_a_forbidden_import() -> None:
    # the same probe on a module that does pull in pydantic must report it
    assert "pydantic" in imported_forbidden(["klaxon.compile.engine_rule"]).split(",")
