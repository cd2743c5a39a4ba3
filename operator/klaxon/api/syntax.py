"""Syntax a user writes inside a field: PromQL, message templates, RE2 regular expressions.

PromQL is parsed by promql-parser (the Rust parser of GreptimeTeam, which follows
Prometheus' grammar and function table). Its errors carry no position, so a small scanner
here finds where the problem is; the verdict is always the parser's.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import promql_parser

# The Rust parser and its conversion to Python objects recurse; a crafted expression could
# exhaust a thread's stack and kill the process. Real rules stay far below these bounds.
MAX_NESTING = 128
MAX_OPERATORS = 1000


@cache
def _promql() -> Any:
    """The parser module, imported on first use (it is not needed to start a command)."""
    import promql_parser

    # Prometheus 2.x's name for what 3.x calls double_exponential_smoothing: still valid there.
    value = promql_parser.ValueType
    legacy = promql_parser.Function("holt_winters", [value.Matrix, value.Scalar, value.Scalar], value.Vector)
    with contextlib.suppress(ValueError):  # already known (a later parser release)
        promql_parser.register_extra_functions([legacy])
    return promql_parser


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident, number, string, op, open, close, error
    text: str
    pos: int


_OPS = ("==", "!=", ">=", "<=", "=~", "!~", "+", "-", "*", "/", "%", "^", "<", ">", "=", ",", ":", "@")
_BINARY_WORDS = frozenset(("and", "or", "unless", "atan2"))
_PAIRS = {"(": ")", "[": "]", "{": "}"}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)[A-Za-z0-9_.]*|[0-9]+[A-Za-z0-9_.]*")


def _scan(expr: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "#":
            j = expr.find("\n", i)
            i = n if j < 0 else j + 1
        elif c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            if j >= n:
                toks.append(_Tok("error", expr[i:], i))
                return toks
            toks.append(_Tok("string", expr[i : j + 1], i))
            i = j + 1
        elif c in "([{":
            toks.append(_Tok("open", c, i))
            i += 1
        elif c in ")]}":
            toks.append(_Tok("close", c, i))
            i += 1
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            m = _NUMBER.match(expr, i)
            end = m.end() if m else i + 1
            toks.append(_Tok("number", expr[i:end], i))
            i = end
        elif c.isalpha() or c in "_:":
            m = _IDENT.match(expr, i)
            assert m is not None
            toks.append(_Tok("ident", m.group(0), i))
            i = m.end()
        else:
            op = next((o for o in _OPS if expr.startswith(o, i)), None)
            toks.append(_Tok("op" if op else "error", op or c, i))
            i += len(op) if op else 1
    return toks


def _closers(toks: list[_Tok]) -> str:
    stack: list[str] = []
    for t in toks:
        if t.kind == "open":
            stack.append(_PAIRS[t.text])
        elif t.kind == "close" and stack and stack[-1] == t.text:
            stack.pop()
    return "".join(reversed(stack))


def _parses(text: str) -> bool:
    try:
        _promql().parse(text)
    except Exception:
        return False
    return True


# Ways to finish a prefix: an operand, a call's arguments, a range, a matcher value...
_STUBS = ("", " 1", " x", " (x)", "x[5m]", " 5m", '="x"', " (a) x", " (a) (x)", " by (a) (x)")
_TAILS = ("", " (x)")


def _viable(toks: list[_Tok], expr: str, count: int) -> bool:
    """Whether the first ``count`` tokens can still begin a valid expression."""
    prefix = expr[: toks[count - 1].pos + len(toks[count - 1].text)] if count else ""
    closers = _closers(toks[:count])
    return any(_parses(prefix + stub + closers + tail) for stub in _STUBS for tail in _TAILS)


def _locate(expr: str, toks: list[_Tok], reason: str) -> int:
    """Where in ``expr`` the parser's ``reason`` applies (an index into ``expr``)."""
    stack: list[_Tok] = []
    for t in toks:
        if t.kind == "error":
            return t.pos
        if t.kind == "open":
            stack.append(t)
        elif t.kind == "close":
            if not stack or _PAIRS[stack[-1].text] != t.text:
                return t.pos
            stack.pop()
    if stack and ("unclosed" in reason or "end of input" in reason):
        return stack[-1].pos
    quoted = re.findall(r"'([^']+)'", reason) + re.findall(r"(?:syntax|regex for|name) :? ?(\S+)$", reason)
    for word in quoted:
        for t in toks:
            if t.text == word or (t.kind == "string" and t.text[1:-1] == word) or t.text.startswith(word):
                return t.pos
    # No token named: the first token after which no valid expression can follow (viability
    # only shrinks as the prefix grows, so a binary search finds it).
    lo, hi = 1, len(toks)
    if not toks or _viable(toks, expr, hi):
        return len(expr.rstrip()) if toks else 0
    while lo < hi:
        mid = (lo + hi) // 2
        if _viable(toks, expr, mid):
            lo = mid + 1
        else:
            hi = mid
    return toks[lo - 1].pos


def _where(expr: str, pos: int) -> str:
    line = expr.count("\n", 0, pos) + 1
    column = pos - (expr.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


@lru_cache(maxsize=4096)
def promql_problem(expr: str) -> str | None:
    """Why ``expr`` is not a valid PromQL expression ('invalid PromQL at line L, column C: reason'), or None."""
    toks = _scan(expr)
    depth = deepest = operators = 0
    for t in toks:
        if t.kind == "open":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_NESTING:
                    return (
                        f"invalid PromQL at {_where(expr, t.pos)}: brackets nest more than {MAX_NESTING} deep "
                        f"(allowed: at most {MAX_NESTING} levels)"
                    )
        elif t.kind == "close":
            depth -= 1
        elif (t.kind == "op" and t.text not in (",", ":", "=", "@")) or (t.kind == "ident" and t.text in _BINARY_WORDS):
            operators += 1
            if operators > MAX_OPERATORS:
                return (
                    f"invalid PromQL at {_where(expr, t.pos)}: more than {MAX_OPERATORS} operators "
                    f"(allowed: at most {MAX_OPERATORS})"
                )
    try:
        ast = _promql().parse(expr)
    except Exception as exc:  # the binding raises ValueError; anything else is a refusal too
        reason = str(exc).strip() or type(exc).__name__
        return f"invalid PromQL at {_where(expr, _locate(expr, toks, reason))}: {reason}"
    # Where the Rust parser is more lenient than Prometheus' own.
    literal = _literal_problem(toks)
    if literal is not None:
        tok, reason = literal
        return f"invalid PromQL at {_where(expr, tok.pos)}: {reason}"
    experimental = _experimental(ast)
    if experimental is not None:
        tok = next((t for t in toks if t.kind == "ident" and t.text == experimental), toks[0])
        return (
            f"invalid PromQL at {_where(expr, tok.pos)}: function {experimental!r} is experimental in Prometheus "
            "and refused unless it runs with --enable-feature=promql-experimental-functions"
        )
    return None


_DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")
_EXPERIMENTAL_AGGREGATIONS = frozenset(("limitk", "limit_ratio"))


def _literal_problem(toks: list[_Tok]) -> tuple[_Tok, str] | None:
    """Numbers Prometheus cannot read (1e400) and durations where a number belongs (`5m > 1`)."""
    stack: list[str] = []
    for i, t in enumerate(toks):
        if t.kind == "open":
            stack.append(t.text)
        elif t.kind == "close" and stack:
            stack.pop()
        elif t.kind == "number":
            if _DURATION.fullmatch(t.text):
                before = [x.text for x in toks[max(0, i - 2) : i]]
                after_offset = before[-1:] == ["offset"] or before == ["offset", "-"]
                if not (stack and stack[-1] == "[") and not after_offset:
                    return t, f"unexpected duration {t.text!r} (allowed here: a number)"
            elif not t.text.lower().startswith("0x"):
                try:
                    value = float(t.text)
                except ValueError:
                    continue
                if value in (float("inf"), float("-inf")):
                    return t, f"number {t.text} is out of range (allowed: a finite float64)"
    return None


def _experimental(ast: promql_parser.Expr) -> str | None:
    found: list[str] = []

    def visit(node: object) -> bool | None:
        func = getattr(node, "func", None)
        if func is not None and getattr(func, "experimental", False):
            found.append(str(func.name))
        elif type(node).__name__ == "AggregateExpr" and str(getattr(node, "op", "")) in _EXPERIMENTAL_AGGREGATIONS:
            found.append(str(node.op))  # type: ignore[attr-defined]
        return False if found else None

    _promql().walk(ast, visit)
    return found[0] if found else None


# -- message templates of NotificationChannels (Jinja, as klaxon.notify renders them) ----------


@cache
def _jinja() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(autoescape=False)


@lru_cache(maxsize=1024)
def jinja_problem(source: str) -> str | None:
    """Why a channel's message template does not compile, or None."""
    from jinja2 import TemplateError

    try:
        _jinja().from_string(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if line else ""
        return f"template does not compile{where}: {exc.message or type(exc).__name__}"
    except RecursionError:
        return "template does not compile: nested too deeply"
    return None


# -- RE2 regular expressions (Alertmanager's silence matchers) ---------------------------------


@cache
def _re2() -> tuple[Any, Any]:
    import re2

    options = re2.Options()
    options.log_errors = False  # the reason goes to the user, not to stderr
    return re2, options


@lru_cache(maxsize=1024)
def re2_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not an RE2 expression (Alertmanager's syntax, which anchors it as ^(?:...)$), or None."""
    re2, options = _re2()
    try:
        re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else b""
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        return f"invalid RE2 regular expression: {text}"
    return None
