"""``klaxon validate``: the GitOps pre-flight check, with the verdict the API server and the webhook give.

Output: ``FILE:LINE: Kind/name: problem`` per problem (LINE is where the document starts),
``... : valid`` per good object, warnings prefixed ``warning:``. Exit 1 when anything is
invalid, 2 on usage errors, else 0 (warnings alone do not fail).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..api.alertconfig import AlertConfigSpec
from ..api.alertrule import AlertRuleSpec
from ..api.manifests import Document, iter_files, load_file
from ..api.problems import Problem
from ..api.validation import parse_object
from ..compile import engine_problems
from .inputs import readable_paths


@dataclass
class Verdict:
    """The verdict on one document: no problems means the API server (with the webhook) accepts it."""

    file: str
    line: int
    kind: str = ""
    name: str = ""
    namespace: str | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    klaxon: bool = True  # False: not a Klaxon object, not checked
    channels: list[tuple[str, str]] = field(default_factory=list)  # (field path, channel name) it references

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def where(self) -> str:
        ident = f"{self.kind or '?'}/{self.name or '?'}: " if self.kind or self.name else ""
        return f"{self.file}:{self.line}: {ident}"


def check_document(doc: Document) -> Verdict:
    """One document, as the API server with Klaxon's CRDs and webhook would judge it."""
    verdict = Verdict(doc.file, doc.line)
    if doc.error is not None:
        verdict.problems.append(Problem("", doc.error))
        return verdict
    if not isinstance(doc.body, dict):
        verdict.problems.append(Problem("", f"document must be a mapping, got {type(doc.body).__name__}"))
        return verdict
    if not doc.is_klaxon:
        verdict.klaxon = False
        return verdict
    parsed = parse_object(doc.body)
    verdict.kind, verdict.name, verdict.namespace = parsed.kind, parsed.name, parsed.namespace
    verdict.problems += parsed.problems
    if isinstance(parsed.spec, AlertRuleSpec):
        verdict.problems += engine_problems(parsed.spec)
        verdict.channels = [(f"spec.notify.channels[{i}]", c) for i, c in enumerate(parsed.spec.notify.channels)]
    elif isinstance(parsed.spec, AlertConfigSpec):
        verdict.channels = [(f"spec.defaults.channels[{i}]", c) for i, c in enumerate(parsed.spec.defaults.channels)]
    return verdict


def check_file(path: str | Path) -> list[Verdict]:
    """Every document of one file; a file with none gets one verdict carrying a warning."""
    docs = load_file(Path(path))
    verdicts = [check_document(doc) for doc in docs]
    if not docs:
        verdicts.append(
            Verdict(str(path), 1, klaxon=False, warnings=["no documents: the file is empty or holds only comments"])
        )
    return verdicts


def file_verdict(path: str | Path) -> tuple[bool, list[tuple[str, str]]]:
    """(accepted?, [(field path, message)]) for a file of one object: the CLI's layer of the corpus tests."""
    problems = [p for v in check_file(path) for p in v.problems]
    return not problems, [(p.path, str(p)) for p in problems]


def _channel_warnings(verdicts: Iterable[Verdict]) -> None:
    """A rule or config naming a NotificationChannel that none of the files defines gets a warning."""
    verdicts = list(verdicts)
    defined = {(v.namespace or "", v.name) for v in verdicts if v.kind == "NotificationChannel" and v.ok}
    for v in verdicts:
        for path, channel in v.channels:
            if (v.namespace or "", channel) not in defined:
                where = f"namespace {v.namespace}" if v.namespace else "the object's namespace"
                v.warnings.append(
                    f"{path}: NotificationChannel {channel!r} is not defined in the files checked; "
                    f"it must exist in {where} before notifications can go out"
                )


def run(paths: Sequence[str], quiet: bool = False) -> int:
    readable_paths(paths)
    files = list(iter_files(paths))
    verdicts: list[Verdict] = []
    for file in files:
        verdicts += check_file(file)
    _channel_warnings(verdicts)
    if not files:
        print(f"warning: no YAML files in {', '.join(paths)}")
    checked = [v for v in verdicts if v.klaxon]
    bad = [v for v in verdicts if not v.ok]
    for v in verdicts:
        for problem in v.problems:
            print(f"{v.where}{problem}")
        for warning in v.warnings:
            print(f"{v.where}warning: {warning}")
        if v.klaxon and v.ok and not quiet:
            print(f"{v.where}valid")
    if not quiet:
        print(f"{len(checked)} Klaxon object(s) checked, {len(bad)} invalid")
    return 1 if bad else 0
