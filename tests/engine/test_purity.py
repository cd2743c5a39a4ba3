"""The engine is a pure core: importing it pulls in no Kubernetes, HTTP or API-model packages."""

import os
import subprocess
import sys
from pathlib import Path

OPERATOR_SRC = Path(__file__).resolve().parents[2] / "operator"


def test_engine_imports_only_stdlib_and_numpy():
    code = (
        "import sys, klaxon.engine\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'kopf', 'kubernetes', 'kubernetes_asyncio', 'aiohttp', 'pydantic', 'yaml'})\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
