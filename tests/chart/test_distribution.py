"""The distribution's name, licence and the install lines the docs give."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "klaxon-operator"


def test_the_distribution_has_a_name_of_its_own_and_ships_its_licence() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == NAME  # "klaxon" on PyPI is an unrelated project
    assert project["scripts"] == {"klaxon": "klaxon.cli.main:entry", "kubectl-klaxon": "klaxon.cli.main:kubectl_main"}
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert "!LICENSE" in (ROOT / ".dockerignore").read_text().splitlines()  # the image builds the wheel


def docs() -> list[Path]:
    skip = {".git", ".tools", "node_modules"}
    return [p for p in ROOT.rglob("*.md") if not skip & set(p.relative_to(ROOT).parts)] + [
        *(ROOT / "operator").rglob("*.py"),
        *(ROOT / "tests").rglob("*.py"),
    ]


def test_every_install_line_names_the_distribution() -> None:
    # pip install [options] TARGET: a clone (".", "-e ."), or the distribution by its name
    wrong = []
    for path in docs():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for m in re.finditer(r"pip install((?:\s+-[-\w]+)*)\s+['\"]?([\w.\-/*]+)", line):
                target = m[2]
                if target.startswith((".", "/")) or target in ("pip", "build"):
                    continue
                if target.startswith("klaxon") and not target.startswith(NAME):
                    wrong.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not wrong, "install lines naming another distribution:\n" + "\n".join(wrong)
