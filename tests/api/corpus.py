"""The valid/invalid corpus and each layer's verdict on a file: the CLI, the webhook, the CRD alone.

Invalid files hold one object with one mistake and a header:

    # field: spec.query.expr      the field every layer must name ("-" for a file YAML cannot read)
    # admission: crd | webhook | client | yaml
    #   crd:     the CRD's schema and CEL refuse it (a cluster without the webhook too)
    #   webhook: only the webhook can (PromQL, templates, RE2, time zones): the CRD alone stores it
    #   client:  kubectl cannot send it (NaN/Inf are not JSON; unknown kind)
    #   yaml:    the text is not one readable YAML object (the CLI's own refusal)
    # expect: text the CLI's message contains (optional)

The real-cluster suite can run the same files through kubectl and the API server with the
webhook registered: `cli_layer` and `header` are the pieces it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from klaxon.api.manifests import load_file
from klaxon.cli.validate import file_verdict
from klaxon.operator.webhook import admission_problems
from support import apiserver

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests/data/invalid").glob("*.yaml"))
VALID = sorted(p for p in (ROOT / "tests/data/valid").iterdir() if p.suffix in (".yaml", ".json"))
ADMISSIONS = ("crd", "webhook", "client", "yaml")


@dataclass(frozen=True)
class Layer:
    """One layer's verdict: accepted, or refused with (field path, message) pairs."""

    accepted: bool
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def paths(self) -> set[str]:
        return {p for p, _ in self.problems}


def header(path: Path, key: str) -> str | None:
    match = re.search(rf"^# {key}: (.*)$", path.read_bytes().decode("utf-8", "replace"), re.M)
    return match.group(1).strip() if match else None


def cli_layer(path: Path) -> Layer:
    ok, problems = file_verdict(path)
    return Layer(ok, tuple(problems))


def documents(path: Path) -> list[Any]:
    return [d.body for d in load_file(path) if d.error is None]


def webhook_layer(doc: Any) -> Layer:
    """The webhook function on what the API server sends it: the stored form (nulls pruned,
    defaults filled in) of an object the CRD accepted. An object the API server refuses first
    never reaches the webhook; the function then gets it as written."""
    body = doc
    if isinstance(doc, dict) and apiserver.decide(doc)[0] in ("stored", "cel"):
        body = apiserver.defaulted(doc)
    kind = body.get("kind") if isinstance(body, dict) else None
    problems = admission_problems(str(kind), body if isinstance(body, dict) else {})
    return Layer(not problems, tuple((p.path, str(p)) for p in problems))


def crd_layer(doc: Any) -> tuple[str, Layer]:
    stage, problems = apiserver.decide(doc)
    return stage, Layer(stage == "stored", tuple(problems))
