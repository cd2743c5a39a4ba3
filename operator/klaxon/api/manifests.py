"""Reading manifests from files as kubectl reads them: multi-document YAML, directories, honest errors.

kubectl decodes YAML with go-yaml v2 (sigs.k8s.io/yaml) and sends JSON; the loader here gives
the same values: ``22:00`` is a string (no YAML 1.1 base-60 numbers), ``0755`` is octal,
``yes``/``on`` are booleans, timestamps stay strings, keys become strings. Unlike kubectl
it refuses duplicate keys (naming both lines): the later value silently winning is never
what the author meant. Each document is parsed on its own, so a YAML error in one does not
hide the others, and every document carries the line it starts on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .constants import GROUP

YAML_SUFFIXES = (".yaml", ".yml", ".json")

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's C parser when present
_DumperBase: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's C emitter: ~7x the pure-Python one
_MERGE = "tag:yaml.org,2002:merge"


class KubeLoader(_Base):  # type: ignore[misc]
    """A safe loader with go-yaml v2's scalars, string keys and no duplicate keys."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}

    line_offset = 0  # the line of the whole file this loader's text starts on

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, f"expected a mapping, found {type(node).__name__}", node.start_mark)
        if any(key_node.tag == _MERGE for key_node, _ in node.value):
            return self._construct_merged(node, deep)
        out: dict[str, Any] = {}
        seen: dict[str, Node] = {}
        for key_node, value_node in node.value:  # one pass: this loader reads every manifest of a run
            key = _key_text(self.construct_object(key_node, deep=True))
            if not isinstance(key, str):
                raise ConstructorError(
                    None, None, "a mapping key must be a string, number or boolean", key_node.start_mark
                )
            if key in seen:
                raise self._duplicate(key, seen[key], key_node)
            seen[key] = key_node
            out[key] = self.construct_object(value_node, deep=deep)
        return out

    def _duplicate(self, key: str, first: Node, again: Node) -> ConstructorError:
        a, b = (self.line_offset + n.start_mark.line + 1 for n in (first, again))
        return ConstructorError(
            None, None, f"duplicate key {key!r} at lines {a} and {b} (remove one; kubectl would keep the last)",
            again.start_mark,
        )

    def _construct_merged(self, node: MappingNode, deep: bool) -> dict[str, Any]:
        """A mapping with ``<<`` merge keys: its own keys are checked for duplicates before merging."""
        seen: dict[str, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = _key_text(self.construct_object(key_node, deep=True))
            if isinstance(key, str) and key in seen:
                raise self._duplicate(key, seen[key], key_node)
            if isinstance(key, str):
                seen[key] = key_node
        self.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _key_text(self.construct_object(key_node, deep=True))
            if not isinstance(key, str):
                raise ConstructorError(
                    None, None, "a mapping key must be a string, number or boolean", key_node.start_mark
                )
            out[key] = self.construct_object(value_node, deep=deep)
        return out

    def construct_yaml_int(self, node: Node) -> int:
        text = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if text.startswith("-") else 1
        text = text.lstrip("+-")
        if text[:2] in ("0x", "0X"):
            return sign * int(text[2:], 16)
        if text[:2] in ("0b", "0B"):
            return sign * int(text[2:], 2)
        if text[:2] in ("0o", "0O"):
            return sign * int(text[2:], 8)
        if len(text) > 1 and text.startswith("0"):
            return sign * int(text[1:], 8)
        return sign * int(text)

    def construct_yaml_bool(self, node: Node) -> bool:
        return str(self.construct_scalar(node)).lower() in ("y", "yes", "true", "on")


def _key_text(key: Any) -> Any:
    """Keys as sigs.k8s.io/yaml turns them into JSON object keys."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (int, float)):
        return str(key)
    return key


def _resolver(tag: str, pattern: str, first: str) -> None:
    KubeLoader.add_implicit_resolver(tag, re.compile(pattern, re.X), list(first))


# go-yaml v2's resolve table (resolve.go), in its order of precedence.
_resolver(
    "tag:yaml.org,2002:bool",
    r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
    "yYnNtTfFoO",
)
_resolver("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN")
KubeLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])
_resolver(
    "tag:yaml.org,2002:int",
    r"^[-+]?(?:0|[1-9][0-9_]*|0[0-7_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+|0[bB][01_]+)$",
    "-+0123456789",
)
_resolver(
    "tag:yaml.org,2002:float",
    r"^[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$",
    "-+0123456789.",
)
_resolver("tag:yaml.org,2002:merge", r"^(?:<<)$", "<")
KubeLoader.add_constructor("tag:yaml.org,2002:int", KubeLoader.construct_yaml_int)
KubeLoader.add_constructor("tag:yaml.org,2002:bool", KubeLoader.construct_yaml_bool)
# A timestamp-looking scalar stays a string, as go-yaml v2 gives it to kubectl.
KubeLoader.add_constructor("tag:yaml.org,2002:timestamp", KubeLoader.construct_yaml_str)


@dataclass(frozen=True)
class Document:
    file: str
    index: int  # 1-based position in the file
    body: Any
    error: str | None = None
    line: int = 1  # the line the document starts on

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def is_klaxon(self) -> bool:
        api = self.body.get("apiVersion", "") if isinstance(self.body, dict) else ""
        return isinstance(api, str) and api.split("/")[0] == GROUP


_DOC_START = re.compile(r"^---(?:[ \t]|$)")
_DOC_END = re.compile(r"^\.\.\.(?:[ \t]|$)")


def _chunks(text: str) -> list[tuple[int, str]]:
    """The stream cut at document markers (column 0 `---`/`...` always are, in YAML), with start lines."""
    lines = text.splitlines(keepends=True)
    chunks: list[tuple[int, list[str]]] = [(0, [])]
    for i, line in enumerate(lines):
        if _DOC_START.match(line):
            chunks.append((i, [line]))
        else:
            chunks[-1][1].append(line)
            if _DOC_END.match(line):
                chunks.append((i + 1, []))
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for start, body in chunks:
        joined = "".join(body)
        if pending is not None:  # directives (%YAML) belong to the next document
            start, joined = pending[0], pending[1] + joined
            pending = None
        if any(line.startswith("%") for line in body) and not any(_DOC_START.match(line) for line in body):
            pending = (start, joined)
            continue
        out.append((start, joined))
    if pending is not None:
        out.append(pending)
    return out


def _content_line(text: str) -> int:
    """0-based index of the first line with content (not blank, not a comment, not a marker)."""
    for i, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not _DOC_START.match(line) and not line.startswith("%"):
            return i
    return 0


def load_documents(text: str, file: str = "<stdin>") -> list[Document]:
    """Every document of ``text``; one that fails to parse becomes a Document with its error."""
    docs: list[Document] = []
    for start, chunk in _chunks(text):
        if not chunk.strip():
            continue
        loader = KubeLoader(chunk)
        loader.line_offset = start
        try:
            while loader.check_node():
                node = loader.get_node()
                body = loader.construct_document(node)
                if body is None:
                    continue
                line = start + (node.start_mark.line if node is not None else 0) + 1
                docs.append(Document(file, len(docs) + 1, body, None, line))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {start + mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            docs.append(
                Document(file, len(docs) + 1, None, f"invalid YAML{where}: {problem}", start + _content_line(chunk) + 1)
            )
        except RecursionError:
            docs.append(
                Document(
                    file,
                    len(docs) + 1,
                    None,
                    "invalid YAML: exceeded maximum nesting depth",
                    start + _content_line(chunk) + 1,
                )
            )
        finally:
            loader.dispose()
    return docs


class _Dumper(_DumperBase):  # type: ignore[misc]
    """SafeDumper's output for plain JSON-like data, without its per-node alias bookkeeping (never
    wanted in a manifest) and with a direct path for the str/dict/list nodes that make up most of it."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_data(self, data: Any) -> Node:
        kind = type(data)
        if kind is str:
            return ScalarNode("tag:yaml.org,2002:str", data)
        if kind is dict:
            pairs = [(self.represent_data(k), self.represent_data(v)) for k, v in data.items()]
            return MappingNode("tag:yaml.org,2002:map", pairs, flow_style=False)
        if kind is list:
            return SequenceNode("tag:yaml.org,2002:seq", [self.represent_data(v) for v in data], flow_style=False)
        node: Node = super().represent_data(data)
        return node


def dump_yaml(obj: Any) -> str:
    """``obj`` as block YAML in key order (what ``klaxon render`` writes), with libyaml when present."""
    return str(yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True))


def load_yaml_all(text: str) -> list[Any]:
    """The documents' values (raises ValueError on the first invalid one)."""
    out = []
    for doc in load_documents(text):
        if doc.error is not None:
            raise ValueError(f"line {doc.line}: {doc.error}")
        out.append(doc.body)
    return out


def load_yaml(text: str) -> Any:
    """One document's value, read as kubectl reads it (raises ValueError when it is not one valid document)."""
    docs = load_yaml_all(text)
    if len(docs) != 1:
        raise ValueError(f"expected one YAML document, found {len(docs)}")
    return docs[0]


def _skipped(path: Path, root: Path) -> bool:
    """Hidden directories, and Helm chart templates (Go templates, not YAML)."""
    rel = path.relative_to(root).parts[:-1]
    if any(part.startswith(".") for part in rel):
        return True
    return any(part == "templates" and (root.joinpath(*rel[:i]) / "Chart.yaml").exists() for i, part in enumerate(rel))


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES and not _skipped(p, path)
            )
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(str(path))


def load_file(path: Path) -> list[Document]:
    try:
        data = path.read_bytes()
    except OSError as exc:  # unreadable (permissions, a device, gone since listed): one problem, not a crash
        return [Document(str(path), 1, None, f"cannot be read ({exc.strerror or exc})")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Document(str(path), 1, None, f"not valid UTF-8 at byte {exc.start} (allowed: UTF-8 text)")]
    return load_documents(text, str(path))


def load_paths(paths: Iterable[str | Path]) -> list[Document]:
    docs: list[Document] = []
    for file in iter_files(paths):
        for doc in load_file(file):
            body = doc.body
            kind = body.get("kind") if isinstance(body, dict) else None
            if isinstance(kind, str) and kind.endswith("List") and isinstance(body.get("items"), list):
                docs.extend(Document(doc.file, doc.index, item, None, doc.line) for item in body["items"])
            else:
                docs.append(doc)
    return docs
