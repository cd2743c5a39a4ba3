"""Ask the real `promtool check rules` for its verdict on many expressions or templates at once."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

PROMTOOL = shutil.which("promtool")


def verdicts(items: list[str], where: str) -> list[str | None]:
    """promtool's error for each item (None when it accepts it); ``where`` is expr, annotation or label.

    One rule file holds one alerting rule per item, so one promtool run judges them all.
    """
    assert PROMTOOL, "promtool is not installed (apt-get install prometheus)"
    rules = []
    for i, item in enumerate(items):
        rule: dict[str, object] = {"alert": f"Case{i}", "expr": item if where == "expr" else "up == 0"}
        if where == "annotation":
            rule["annotations"] = {"summary": item}
        elif where == "label":
            rule["labels"] = {"team": item}
        rules.append(rule)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}, allow_unicode=True))
        run = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    out: list[str | None] = [None] * len(items)
    for line in (run.stdout + run.stderr).splitlines():
        m = re.search(r'rule (\d+), "Case\d+": (.*)$', line)
        if m:
            out[int(m.group(1)) - 1] = m.group(2)
    if run.returncode != 0:
        assert any(out), f"promtool failed without naming a rule:\n{run.stdout}\n{run.stderr}"
    return out
