"""Sample data for `klaxon preview --data`: CSV, JSON (two shapes) and OpenMetrics text.

Every loader returns `RawSeries` (labels, sorted unix-second times, finite values) or raises
`DataError` whose message starts with ``file:line:`` and says what is allowed.

Formats (chosen by the file's suffix: .csv, .json, .om/.txt/.prom):

* CSV: a header ``timestamp,<label columns...>,value``; one sample a line. Label columns are
  optional; a ``__name__`` column names the metric, an ``operand`` column the composite operand.
* JSON: a Prometheus ``query_range`` response ``{"data":{"result":[{"metric":{...},"values":[[ts,"v"]]}]}}``
  or a list ``[{"labels":{...},"samples":[[ts,v],...]}]``.
* OpenMetrics: ``# TYPE``/``# HELP``/``# UNIT`` comments, samples ``name{l="v"} value timestamp``, ``# EOF``.

Timestamps are RFC 3339 with a zone (``2026-06-24T12:00:00Z``) or unix seconds; a unix
timestamp above 1e11 is taken for milliseconds and rejected. Within one series timestamps
must strictly increase; values must be finite numbers.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

MS_LIMIT = 1e11
TS_ALLOWED = "RFC 3339 with a zone, e.g. 2026-06-24T12:00:00Z, or unix seconds"
VALUE_ALLOWED = "a finite number"


class DataError(ValueError):
    """Bad sample data; the message names the file and line."""


@dataclass(frozen=True, eq=False)
class RawSeries:
    labels: dict[str, str]
    times: FloatArray = field(repr=False)
    values: FloatArray = field(repr=False)
    source: str = ""


def parse_timestamp(raw: Any, where: str) -> float:
    """Unix seconds from RFC 3339 text or a number; milliseconds are an error."""
    if isinstance(raw, bool):
        raise DataError(f"{where}: timestamp {raw!r} is not a time (allowed: {TS_ALLOWED})")
    if isinstance(raw, int | float):
        t = float(raw)
    else:
        text = str(raw).strip()
        try:
            t = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                raise DataError(f"{where}: timestamp {text!r} is not a time (allowed: {TS_ALLOWED})") from None
            if dt.tzinfo is None:
                raise DataError(f"{where}: timestamp {text!r} has no time zone (allowed: {TS_ALLOWED})") from None
            return dt.timestamp()
    if not math.isfinite(t) or t < 0:
        raise DataError(f"{where}: timestamp {raw!r} is not a time (allowed: {TS_ALLOWED})")
    if t > MS_LIMIT:
        raise DataError(
            f"{where}: timestamp {raw!r} looks like milliseconds (wrong units; allowed: {TS_ALLOWED}); divide by 1000"
        )
    return t


def parse_value(raw: Any, where: str) -> float:
    if isinstance(raw, bool):
        raise DataError(f"{where}: value {raw!r} is not a number (allowed: {VALUE_ALLOWED})")
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{where}: value {raw!r} is not a number (allowed: {VALUE_ALLOWED})") from None
    if not math.isfinite(v):
        raise DataError(f"{where}: value {raw!r} is not finite (allowed: {VALUE_ALLOWED}; drop the sample instead)")
    return v


class _Builder:
    """Collects samples per label set, checking order as they come."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.series: dict[tuple[tuple[str, str], ...], tuple[list[float], list[float]]] = {}

    def add(self, labels: Mapping[str, str], t: float, v: float, where: str) -> None:
        key = tuple(sorted(labels.items()))
        ts, vs = self.series.setdefault(key, ([], []))
        if ts and t <= ts[-1]:
            problem = "duplicate" if t == ts[-1] else "unsorted"
            raise DataError(
                f"{where}: {problem} timestamp {_ts(t)} in series {_fmt(labels)} "
                f"(allowed: strictly increasing timestamps per series; previous was {_ts(ts[-1])})"
            )
        ts.append(t)
        vs.append(v)

    def build(self) -> list[RawSeries]:
        if not self.series:
            raise DataError(f"{self.source}: no samples")
        return [
            RawSeries(dict(k), np.asarray(ts, np.float64), np.asarray(vs, np.float64), self.source)
            for k, (ts, vs) in self.series.items()
        ]


def _ts(t: float) -> str:
    text = f"{t:.3f}".rstrip("0").rstrip(".")
    return f"{text} ({datetime.fromtimestamp(t, UTC).isoformat().replace('+00:00', 'Z')})"


def _fmt(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def load_csv(path: Path, text: str) -> list[RawSeries]:
    src = str(path)
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise DataError(f"{src}:1: empty file (allowed: a header timestamp,<label columns...>,value)")
    header = [h.strip() for h in header]
    if len(header) < 2 or header[0] != "timestamp" or header[-1] != "value":
        raise DataError(
            f"{src}:1: header {','.join(header)!r} is missing columns "
            "(allowed: timestamp,<label columns...>,value — first column timestamp, last column value)"
        )
    names = header[1:-1]
    b = _Builder(src)
    for lineno, row in enumerate(rows, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        where = f"{src}:{lineno}"
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} columns, the header has {len(header)} (allowed: {','.join(header)})")
        labels = {n: row[i + 1].strip() for i, n in enumerate(names) if row[i + 1].strip()}
        b.add(labels, parse_timestamp(row[0], where), parse_value(row[-1], where), where)
    return b.build()


def _json_lines(text: str) -> list[int]:
    """Line numbers of the `[` that opens each innermost 2-element array (sample), in order."""
    out: list[int] = []
    line = 1
    depth_stack: list[tuple[int, bool]] = []  # (line, saw a nested array)
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            elif ch == "\n":
                line += 1
            continue
        if ch == '"':
            in_str = True
        elif ch == "\n":
            line += 1
        elif ch == "[":
            if depth_stack:
                depth_stack[-1] = (depth_stack[-1][0], True)
            depth_stack.append((line, False))
        elif ch == "]" and depth_stack:
            start, nested = depth_stack.pop()
            if not nested:
                out.append(start)
    return out


def load_json(path: Path, text: str) -> list[RawSeries]:
    src = str(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{src}:{e.lineno}: not JSON: {e.msg}") from None
    shape = (
        'allowed: {"data":{"result":[{"metric":{...},"values":[[ts,"v"],...]}]}} '
        'or [{"labels":{...},"samples":[[ts,v],...]}]'
    )
    entries: Iterable[tuple[Any, Any]]
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict) and isinstance(doc["data"].get("result"), list):
        entries = [
            (r.get("metric", {}), r.get("values")) if isinstance(r, dict) else (None, None)
            for r in doc["data"]["result"]
        ]
    elif isinstance(doc, list):
        entries = [(r.get("labels", {}), r.get("samples")) if isinstance(r, dict) else (None, None) for r in doc]
    else:
        raise DataError(f"{src}:1: unknown JSON shape ({shape})")
    sample_lines = iter(_json_lines(text))
    b = _Builder(src)
    for i, (labels, samples) in enumerate(entries):
        if not isinstance(labels, dict) or not isinstance(samples, list):
            raise DataError(f"{src}: series #{i + 1}: missing labels/metric or samples/values ({shape})")
        str_labels = {str(k): str(v) for k, v in labels.items()}
        for s in samples:
            line = next(sample_lines, 0)
            where = f"{src}:{line}" if line else f"{src}: series #{i + 1}"
            if not isinstance(s, list) or len(s) != 2:
                raise DataError(f"{where}: sample {s!r} is not [timestamp, value] ({shape})")
            b.add(str_labels, parse_timestamp(s[0], where), parse_value(s[1], where), where)
    return b.build()


_OM_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+(\S+))?\s*$")
_OM_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def load_openmetrics(path: Path, text: str) -> list[RawSeries]:
    src = str(path)
    b = _Builder(src)
    allowed = 'allowed: name{label="value",...} value timestamp'
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{src}:{lineno}"
        if not line:
            continue
        if line.startswith("#"):
            if line == "# EOF":
                break
            continue
        m = _OM_SAMPLE.match(line)
        if m is None:
            raise DataError(f"{where}: not an OpenMetrics sample ({allowed})")
        name, body, value, ts = m.groups()
        labels = {"__name__": name}
        if body:
            inner = body[1:-1]
            pos = 0
            while pos < len(inner):
                lm = _OM_LABEL.match(inner, pos)
                if lm is None:
                    raise DataError(f"{where}: bad label set {body} ({allowed})")
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        if ts is None:
            raise DataError(f"{where}: sample has no timestamp (preview needs one; {allowed})")
        b.add(labels, parse_timestamp(ts, where), parse_value(value, where), where)
    return b.build()


#: Data file suffixes and their loaders' formats (the suffix picks the format).
SUFFIXES = {".csv": "csv", ".json": "json", ".om": "om", ".txt": "om", ".prom": "om", ".openmetrics": "om"}
SUFFIXES_ALLOWED = ".csv, .json, .om/.txt/.prom for OpenMetrics"


def data_format(path: str | Path) -> str:
    """The format of a data file by its suffix (DataError for an unknown one): checked before reading."""
    p = Path(path)
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise DataError(f"{p}: unknown data format {p.suffix.lower() or '(no suffix)'!r} (allowed: {SUFFIXES_ALLOWED})")
    return fmt


def load_file(path: str | Path) -> list[RawSeries]:
    p = Path(path)
    fmt = data_format(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text (byte {e.start}; allowed: {SUFFIXES_ALLOWED} as text)") from None
    if fmt == "csv":
        return load_csv(p, text)
    if fmt == "json":
        return load_json(p, text)
    return load_openmetrics(p, text)
