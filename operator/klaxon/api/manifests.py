"""Reading manifests from files: multi-document YAML, directories, honest errors."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import GROUP

YAML_SUFFIXES = (".yaml", ".yml", ".json")


class _Loader(yaml.SafeLoader):
    """SafeLoader reading floats as YAML 1.2 (and Kubernetes) do: 1e3 and 1.5e3 are numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def load_yaml_all(text: str) -> list[Any]:
    return [b for b in yaml.load_all(text, Loader=_Loader)]


@dataclass(frozen=True)
class Document:
    file: str
    index: int  # 1-based position in the file
    body: Any
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.index}"

    @property
    def is_klaxon(self) -> bool:
        api = self.body.get("apiVersion", "") if isinstance(self.body, dict) else ""
        return isinstance(api, str) and api.split("/")[0] == GROUP


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(str(path))


def load_file(path: Path) -> list[Document]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Document(str(path), 1, None, f"not valid UTF-8 at byte {exc.start} (allowed: UTF-8 text)")]
    try:
        bodies = load_yaml_all(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return [Document(str(path), 1, None, f"invalid YAML{line}: {problem}")]
    return [Document(str(path), i, body) for i, body in enumerate(bodies, start=1) if body is not None]


def load_paths(paths: Iterable[str | Path]) -> list[Document]:
    docs: list[Document] = []
    for file in iter_files(paths):
        for doc in load_file(file):
            if isinstance(doc.body, dict) and doc.body.get("kind", "").endswith("List") and "items" in doc.body:
                docs.extend(Document(doc.file, doc.index, item) for item in doc.body["items"] or [])
            else:
                docs.append(doc)
    return docs
