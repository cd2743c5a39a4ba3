"""A parse-level check of Go text/template as Prometheus expands alert labels and annotations.

No maintained Go-template parser exists for Python, so this follows Go's text/template/parse
closely enough to give the verdict `promtool check rules` gives (it parses, never executes):
delimiters, comments, quoted and raw strings, numbers, parentheses, control structures
(if/else/range/with/define/block/end/break/continue), the pipeline grammar, the functions
Prometheus defines and the variables in scope (``$labels``, ``$value``, ``$externalLabels``,
``$externalURL``, ``$`` and those the template declares). Field names are not checked: Go
resolves them only when the template runs, and so does Prometheus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# text/template's own functions, and those Prometheus adds (any 2.x or 3.x release).
_GO = "and call html index slice js len not or print printf println urlquery eq ge gt le lt ne"
_PROMETHEUS = (
    "query first label value strvalue args reReplaceAll safeHtml match title toUpper toLower graphLink tableLink "
    "sortByLabel humanize humanize1024 humanizeDuration humanizePercentage humanizeTimestamp toTime toDuration now "
    "pathPrefix externalURL parseDuration stripPort stripDomain urlQueryEscape"
)
GO_FUNCTIONS = frozenset(_GO.split(" "))
PROMETHEUS_FUNCTIONS = frozenset(_PROMETHEUS.split(" "))
FUNCTIONS = GO_FUNCTIONS | PROMETHEUS_FUNCTIONS
# Prometheus puts these in front of every alert template.
ALERT_VARIABLES = ("$", "$labels", "$externalLabels", "$externalURL", "$value")

_KEYWORDS = frozenset(["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"])
_LITERALS = frozenset(("true", "false", "nil"))
_NUMBER = re.compile(
    r"[+-]?(0[xX][0-9a-fA-F_]*\.?[0-9a-fA-F_]*([pP][+-]?[0-9_]+)?|0[bB][01_]+|0[oO][0-7_]+"
    r"|[0-9][0-9_]*\.?[0-9_]*([eE][+-]?[0-9_]+)?|\.[0-9][0-9_]*([eE][+-]?[0-9_]+)?)i?"
)
_GO_NUMBER = re.compile(
    r"[+-]?(0[xX](_?[0-9a-fA-F])+(\.([0-9a-fA-F](_?[0-9a-fA-F])*)?)?([pP][+-]?[0-9](_?[0-9])*)?"
    r"|0[xX]\.[0-9a-fA-F](_?[0-9a-fA-F])*[pP][+-]?[0-9](_?[0-9])*"
    r"|0[bB](_?[01])+|0[oO](_?[0-7])+|0(_?[0-7])*"
    r"|[1-9](_?[0-9])*(\.([0-9](_?[0-9])*)?)?([eE][+-]?[0-9](_?[0-9])*)?"
    r"|0(_?[0-9])*\.([0-9](_?[0-9])*)?([eE][+-]?[0-9](_?[0-9])*)?"
    r"|0(_?[0-9])*[eE][+-]?[0-9](_?[0-9])*"
    r"|\.[0-9](_?[0-9])*([eE][+-]?[0-9](_?[0-9])*)?)i?"
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r"\.[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE = re.compile(r"\$[A-Za-z0-9_]*")
_CHAR_CONSTANT = re.compile(r"'(\\.[^']*|[^\\'\n])'")
_PUNCTUATION = {"|": "pipe", ",": "comma", "=": "assign"}
_STRING_ESCAPE = re.compile(r"""\\([abfnrtv\\'"]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3})""")


class TemplateSyntaxError(ValueError):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


@dataclass
class _Token:
    kind: str  # string, raw, char, number, name, field, var, dot, pipe, lparen, rparen, comma, declare, assign
    text: str
    pos: int


@dataclass
class _Block:
    keyword: str
    pos: int
    seen_else: bool = False
    scope: list[str] = field(default_factory=list)


def check(text: str, variables: tuple[str, ...] = ALERT_VARIABLES) -> None:
    """Raise TemplateSyntaxError when Prometheus would refuse to parse ``text``."""
    _Parser(text, variables).run()


def problem(text: str, variables: tuple[str, ...] = ALERT_VARIABLES) -> str | None:
    """``line L, column C: reason`` when ``text`` is not a valid template, else None."""
    try:
        check(text, variables)
    except TemplateSyntaxError as exc:
        line = text.count("\n", 0, exc.pos) + 1
        column = exc.pos - (text.rfind("\n", 0, exc.pos) + 1) + 1
        return f"line {line}, column {column}: {exc.message}"
    return None


class _Parser:
    def __init__(self, text: str, variables: tuple[str, ...]) -> None:
        self.text = text
        self.blocks: list[_Block] = []
        self.vars: list[str] = list(variables)

    def run(self) -> None:
        pos = 0
        text = self.text
        while True:
            start = text.find("{{", pos)
            if start < 0:
                break
            pos = self._action(start)
        if self.blocks:
            block = self.blocks[-1]
            raise TemplateSyntaxError(block.pos, f"unexpected EOF: {{{{{block.keyword}}}}} has no {{{{end}}}}")

    # -- lexing one action ---------------------------------------------------------------

    def _action(self, start: int) -> int:
        """Check the action at ``start`` ({{); return the position after its }}."""
        text = self.text
        i = start + 2
        if text[i : i + 1] == "-" and text[i + 1 : i + 2] in (" ", "\t", "\r", "\n"):
            i += 2  # the left trim marker
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise TemplateSyntaxError(start, "unclosed comment")
            j = end + 2
            if text.startswith(" -}}", j) or text.startswith("}}", j):
                return j + (4 if text[j] == " " else 2)
            raise TemplateSyntaxError(start, "comment ends before closing delimiter")
        tokens, after = self._lex(start, i)
        self._statement(start, tokens)
        return after

    def _lex(self, start: int, i: int) -> tuple[list[_Token], int]:
        text = self.text
        tokens: list[_Token] = []
        depth = 0
        while True:
            if i >= len(text):
                raise TemplateSyntaxError(start, "unclosed action")
            c = text[i]
            if c in " \t\r\n":
                j = i
                while j < len(text) and text[j] in " \t\r\n":
                    j += 1
                if text.startswith("-}}", j):
                    return self._closed(tokens, i, depth), j + 3
                i = j
                continue
            if text.startswith("}}", i):
                return self._closed(tokens, i, depth), i + 2
            if c in "\"`'":
                i = self._quoted(tokens, i)
            elif c == "$" or (c == "." and not (i + 1 < len(text) and text[i + 1].isdigit())):
                i = self._lex_variable(tokens, i)
            elif (
                c.isdigit()
                or c == "."
                or (c in "+-" and i + 1 < len(text) and (text[i + 1].isdigit() or text[i + 1] == "."))
            ):
                i = self._number(tokens, i)
            elif c.isalpha() or c == "_":
                m = _NAME.match(text, i)
                assert m is not None
                tokens.append(_Token("name", m.group(0), i))
                i = m.end()
                if m.group(0) in _LITERALS and _FIELD.match(text, i):
                    raise TemplateSyntaxError(i, f"unexpected . after term {m.group(0)!r}")
                i = self._fields(tokens, i)
            elif c == "(":
                depth += 1
                tokens.append(_Token("lparen", "(", i))
                i += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise TemplateSyntaxError(i, "unexpected right paren")
                tokens.append(_Token("rparen", ")", i))
                i = self._fields(tokens, i + 1)
            elif text.startswith(":=", i):
                tokens.append(_Token("declare", ":=", i))
                i += 2
            elif c in _PUNCTUATION:
                tokens.append(_Token(_PUNCTUATION[c], c, i))
                i += 1
            else:
                raise TemplateSyntaxError(i, f"unrecognized character in action: {c!r}")

    def _lex_variable(self, tokens: list[_Token], i: int) -> int:
        """A variable (`$x`), a field (`.a`) or the dot, with the field chain after it."""
        m = _VARIABLE.match(self.text, i) if self.text[i] == "$" else _FIELD.match(self.text, i)
        if m is None:
            tokens.append(_Token("dot", ".", i))
            return i + 1
        tokens.append(_Token("var" if self.text[i] == "$" else "field", m.group(0), i))
        return self._fields(tokens, m.end())

    @staticmethod
    def _closed(tokens: list[_Token], i: int, depth: int) -> list[_Token]:
        if depth:
            raise TemplateSyntaxError(i, "unclosed left paren")
        return tokens

    def _quoted(self, tokens: list[_Token], i: int) -> int:
        """A "string", a `raw string` or a 'c'haracter constant starting at i; returns the index after it."""
        text, c = self.text, self.text[i]
        if c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise TemplateSyntaxError(i, "unterminated raw quoted string")
            tokens.append(_Token("string", text[i : j + 1], i))
            return j + 1
        if c == "'":
            m = _CHAR_CONSTANT.match(text, i)
            if m is None:
                raise TemplateSyntaxError(i, "unterminated or malformed character constant")
            tokens.append(_Token("number", m.group(0), i))
            return m.end()
        j = i + 1
        while j < len(text) and text[j] != '"':
            if text[j] == "\n":
                raise TemplateSyntaxError(i, "unterminated quoted string")
            if text[j] == "\\":
                m = _STRING_ESCAPE.match(text, j)
                if m is None:
                    raise TemplateSyntaxError(j, "invalid escape in quoted string")
                j = m.end()
                continue
            j += 1
        if j >= len(text):
            raise TemplateSyntaxError(i, "unterminated quoted string")
        tokens.append(_Token("string", text[i : j + 1], i))
        return j + 1

    def _number(self, tokens: list[_Token], i: int) -> int:
        text = self.text
        m = _NUMBER.match(text, i)
        end = m.end() if m else i + 1
        # Go's lexer takes every alphanumeric run after a number into it ("5x" is one bad number).
        while end < len(text) and (text[end].isalnum() or text[end] == "_"):
            end += 1
        word = text[i:end]
        if not _GO_NUMBER.fullmatch(word):
            raise TemplateSyntaxError(i, f"bad number syntax: {word!r}")
        if text[end : end + 1] == ".":
            raise TemplateSyntaxError(end, f"unexpected {text[end : end + 2]!r} in operand")
        tokens.append(_Token("number", word, i))
        return end

    def _fields(self, tokens: list[_Token], i: int) -> int:
        """Field chains after a variable, a field or a parenthesis: `$x.a.b`, `(f).a`."""
        while True:
            m = _FIELD.match(self.text, i)
            if m is None:
                return i
            tokens.append(_Token("chain", m.group(0), i))
            i = m.end()

    # -- parsing one action ----------------------------------------------------------------

    def _statement(self, start: int, tokens: list[_Token]) -> None:
        if not tokens:
            raise TemplateSyntaxError(start, "missing value for command")
        head = tokens[0]
        word = head.text if head.kind == "name" else ""
        rest = tokens[1:]
        if word in ("if", "range", "with"):
            block = _Block(word, start, scope=list(self.vars))
            self.blocks.append(block)
            self._pipeline(rest, word, start, decl_ok=True, two_vars=word == "range")
        elif word == "else":
            if not self.blocks or self.blocks[-1].keyword not in ("if", "range", "with"):
                raise TemplateSyntaxError(start, "unexpected {{else}}")
            block = self.blocks[-1]
            if block.seen_else:
                raise TemplateSyntaxError(start, "expected {{end}} after {{else}}, found another {{else}}")
            nested = rest[0].text if rest and rest[0].kind == "name" else ""
            if nested in ("if", "with") and nested == block.keyword:
                # {{else if}} in an if (and, since Go 1.23, {{else with}} in a with): one chain, one {{end}}.
                self._pipeline(rest[1:], nested, start, decl_ok=True)
            elif nested:
                raise TemplateSyntaxError(rest[0].pos, f"unexpected {{{{else {nested}}}}} in {{{{{block.keyword}}}}}")
            elif rest:
                raise TemplateSyntaxError(rest[0].pos, f"unexpected {rest[0].text!r} in else")
            else:
                block.seen_else = True
        elif word == "end":
            if rest:
                raise TemplateSyntaxError(rest[0].pos, f"unexpected {rest[0].text!r} in end")
            if not self.blocks:
                raise TemplateSyntaxError(start, "unexpected {{end}}")
            block = self.blocks.pop()
            self.vars = block.scope
        elif word in ("define", "block"):
            if word == "define" and self.blocks:
                raise TemplateSyntaxError(start, "unexpected {{define}}: define is allowed at the top level only")
            if not rest or rest[0].kind != "string":
                raise TemplateSyntaxError(start, f"missing template name in {{{{{word}}}}}")
            if word == "define" and len(rest) > 1:
                raise TemplateSyntaxError(rest[1].pos, f"unexpected {rest[1].text!r} in define clause")
            if word == "block":
                self._pipeline(rest[1:], "block", start, decl_ok=False)
            self.blocks.append(_Block(word, start, scope=list(self.vars)))
            self.vars = ["$"]
        elif word == "template":
            if not rest or rest[0].kind != "string":
                raise TemplateSyntaxError(start, "missing template name in {{template}}")
            if len(rest) > 1:
                self._pipeline(rest[1:], "template", start, decl_ok=False)
        elif word in ("break", "continue"):
            if not any(b.keyword == "range" for b in self.blocks):
                raise TemplateSyntaxError(start, f"{{{{{word}}}}} outside {{{{range}}}}")
            if rest:
                raise TemplateSyntaxError(rest[0].pos, f"unexpected {rest[0].text!r} in {word}")
        else:
            self._pipeline(tokens, "command", start, decl_ok=True)

    def _pipeline(self, tokens: list[_Token], context: str, start: int, decl_ok: bool, two_vars: bool = False) -> None:
        if not tokens:
            raise TemplateSyntaxError(start, f"missing value for {context}")
        i = 0
        declared: list[str] = []
        # Declarations: $x := ..., $x = ..., and in range $i, $x := ...
        if tokens[0].kind == "var" and len(tokens) > 1 and tokens[1].kind in ("declare", "assign", "comma"):
            if not decl_ok:
                raise TemplateSyntaxError(tokens[1].pos, f"unexpected {tokens[1].text!r} in {context}")
            if tokens[1].kind == "comma":
                if not two_vars:
                    raise TemplateSyntaxError(tokens[1].pos, f"too many declarations in {context}")
                if len(tokens) < 4 or tokens[2].kind != "var" or tokens[3].kind not in ("declare", "assign"):
                    raise TemplateSyntaxError(tokens[1].pos, "range can only initialize variables")
                names, i = [tokens[0], tokens[2]], 4
            else:
                names, i = [tokens[0]], 2
            # Go checks an assignment's target ($x = ...) only when the template runs.
            declared += [name.text for name in names]
            if i >= len(tokens):
                raise TemplateSyntaxError(start, f"missing value for {context}")
        self._commands(tokens[i:], context, start)
        self.vars.extend(declared)

    def _commands(self, tokens: list[_Token], context: str, start: int) -> None:
        """`cmd | cmd | ...`; parenthesised pipelines are checked recursively."""
        stage = 0
        i = 0
        while True:
            stage += 1
            cmd_start = i
            while i < len(tokens) and tokens[i].kind != "pipe":
                if tokens[i].kind == "lparen":
                    i = self._paren(tokens, i)
                else:
                    self._operand(tokens[i])
                    i += 1
            cmd = tokens[cmd_start:i]
            if not cmd:
                pos = tokens[i].pos if i < len(tokens) else start
                raise TemplateSyntaxError(pos, f"missing value for {context}")
            first = cmd[0]
            if first.kind in ("declare", "assign", "comma"):
                raise TemplateSyntaxError(first.pos, f"unexpected {first.text!r} in {context}")
            if stage > 1 and (
                first.kind in ("string", "number", "dot") or (first.kind == "name" and first.text in _LITERALS)
            ):
                raise TemplateSyntaxError(first.pos, f"non executable command in pipeline stage {stage}")
            for tok in cmd[1:]:
                if tok.kind in ("declare", "assign", "comma"):
                    raise TemplateSyntaxError(tok.pos, f"unexpected {tok.text!r} in operand")
            i += 1  # the pipe
            if i >= len(tokens):
                return  # Go accepts a trailing pipe: `{{ x | }}`

    def _paren(self, tokens: list[_Token], i: int) -> int:
        depth = 0
        j = i
        while j < len(tokens):
            if tokens[j].kind == "lparen":
                depth += 1
            elif tokens[j].kind == "rparen":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        inner = tokens[i + 1 : j]
        if not inner:
            raise TemplateSyntaxError(tokens[i].pos, "missing value for parenthesized pipeline")
        self._pipeline(inner, "parenthesized pipeline", tokens[i].pos, decl_ok=True)
        j += 1
        while j < len(tokens) and tokens[j].kind == "chain":
            j += 1
        return j

    def _operand(self, tok: _Token) -> None:
        if tok.kind == "name":
            if tok.text in _KEYWORDS:
                raise TemplateSyntaxError(tok.pos, f"unexpected {tok.text!r} in command")
            if tok.text not in _LITERALS and tok.text not in FUNCTIONS:
                raise TemplateSyntaxError(tok.pos, f"function {tok.text!r} not defined")
        elif tok.kind == "var":
            if tok.text not in self.vars:
                raise TemplateSyntaxError(tok.pos, f"undefined variable {tok.text!r}")
        elif tok.kind == "rparen":
            raise TemplateSyntaxError(tok.pos, "unexpected right paren")
