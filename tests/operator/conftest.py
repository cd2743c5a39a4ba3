"""Operator tests: the real kopf registry against the kube_harness emulator (kmock-based)."""

from __future__ import annotations

import pathlib
import sys

# Not a package: a package named ``operator`` would shadow the standard library's.
_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # for kube_harness
    sys.path.insert(0, _TESTS)
_SRC = str(pathlib.Path(__file__).resolve().parents[2] / "operator")
if sys.path[:1] != [_SRC]:  # this checkout's sources, not whatever klaxon the venv has installed
    sys.path.insert(0, _SRC)
if not str(getattr(sys.modules.get("klaxon"), "__file__", _SRC)).startswith(_SRC):
    for _mod in [m for m in sys.modules if m == "klaxon" or m.startswith("klaxon.")]:
        del sys.modules[_mod]

from operator_helpers import operator  # noqa: E402

from kube_harness.fixtures import kopf_runner, kopf_settings, kube, kube_api  # noqa: E402

__all__ = ["kopf_runner", "kopf_settings", "kube", "kube_api", "operator"]
