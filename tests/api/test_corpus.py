"""One verdict at every layer: the CLI, the webhook and the CRD (schema + CEL) on the corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from .corpus import ADMISSIONS, INVALID, VALID, cli_layer, crd_layer, documents, header, webhook_layer


def test_corpus_is_large_and_labelled() -> None:
    assert len(INVALID) >= 150
    kinds = Counter(header(p, "admission") for p in INVALID)
    assert set(kinds) <= set(ADMISSIONS), kinds
    assert kinds["crd"] >= 100 and kinds["webhook"] >= 30 and kinds["client"] >= 10 and kinds["yaml"] >= 5
    for path in INVALID:
        assert header(path, "field"), f"{path.name} has no '# field:' line"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_every_layer_refuses_naming_the_field(path: Path) -> None:
    field, admission, expect = header(path, "field"), header(path, "admission"), header(path, "expect")
    cli = cli_layer(path)
    assert not cli.accepted, f"klaxon validate accepts {path.name}"
    if expect:
        assert any(expect in message for _, message in cli.problems), cli.problems
    if admission == "yaml":
        return
    assert field in cli.paths, f"the CLI names {sorted(cli.paths)}, not {field}"
    (doc,) = documents(path)
    hook = webhook_layer(doc)
    assert not hook.accepted, f"the webhook accepts {path.name}"
    assert field in hook.paths, f"the webhook names {sorted(hook.paths)}, not {field}"
    assert cli.paths == hook.paths, "the CLI and the webhook disagree on the fields"
    stage, crd = crd_layer(doc)
    if admission == "webhook":
        assert crd.accepted, f"the CRD refuses it ({crd.problems}): say '# admission: crd'"
        return
    assert not crd.accepted, f"the CRD alone accepts {path.name}"
    assert (stage == "client") == (admission == "client"), stage
    assert field in crd.paths, f"the CRD names {sorted(crd.paths)}, not {field}"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_layer_accepts_the_valid_corpus(path: Path) -> None:
    cli = cli_layer(path)
    assert cli.accepted, cli.problems
    docs = documents(path)
    assert docs
    for doc in docs:
        assert webhook_layer(doc).accepted, webhook_layer(doc).problems
        assert crd_layer(doc)[1].accepted, crd_layer(doc)[1].problems
