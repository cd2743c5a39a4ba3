"""PromQL text building blocks: literals, escaping, selectors, windows.

Every user value that ends up in PromQL goes through ``string_literal`` (and, inside
``=~`` alternations, through ``regex_quote`` first), so a label value can never change
the meaning of the query it sits in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from ..api.common import format_duration

# RE2's metacharacters, exactly those Go's regexp.QuoteMeta escapes.
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")

_STRING_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\v": "\\v",
}

# One millisecond: PromQL timestamps are whole milliseconds.
_MS = 0.001


# Every escape at once, for str.translate (string literals are built ~10 times per compiled rule).
_STRING_TABLE = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)},
    **{ord(ch): esc for ch, esc in _STRING_ESCAPES.items()},
}


def string_literal(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal (Go escape rules)."""
    return '"' + value.translate(_STRING_TABLE) + '"'


def regex_quote(value: str) -> str:
    """``value`` as an RE2 pattern matching exactly that text (Go's regexp.QuoteMeta)."""
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in value)


def number(value: float) -> str:
    """A float as a PromQL number literal that parses back to the same float."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def duration(seconds: float) -> str:
    return format_duration(seconds)


def window(seconds: float) -> str:
    """A range ``[W]`` that selects the left-open (t-W, t] on Prometheus 2.x and 3.x.

    Prometheus 2.x ranges are closed ([t-W, t]); timestamps are whole milliseconds, so
    W-1ms selects exactly the samples of (t-W, t] there. Prometheus 3.x ranges are
    left-open already; W-1ms then only drops a sample at exactly t-W+1ms.
    """
    return duration(max(seconds - _MS, _MS))


def matchers(selector: Mapping[str, str] | None, scope: Mapping[str, Sequence[str]] | None) -> list[str]:
    out = [f"{name}={string_literal(value)}" for name, value in sorted((selector or {}).items())]
    for name, values in sorted((scope or {}).items()):
        unique = sorted(set(values))
        if len(unique) == 1:
            out.append(f"{name}={string_literal(unique[0])}")
        else:
            out.append(f"{name}=~{string_literal('|'.join(regex_quote(v) for v in unique))}")
    return out


def selector(metric: str, matcher_list: Iterable[str]) -> str:
    inner = ",".join(matcher_list)
    return f"{metric}{{{inner}}}" if inner else metric


def label_list(labels: Sequence[str]) -> str:
    return ", ".join(labels)


def aggregate(op: str, labels: Sequence[str] | None, expr: str) -> str:
    """``op by (labels) (expr)``; ``labels=None`` keeps every label (no aggregation)."""
    if labels is None:
        return expr
    if not labels:
        return f"{op}({expr})"
    return f"{op} by ({label_list(labels)}) ({expr})"


def paren(expr: str) -> str:
    return f"({expr})"


def template_text(text: str) -> str:
    """Plain text made safe inside a Go text/template (annotations are templates)."""
    return text.replace("{{", '{{ "{{" }}')
