"""SCIM filter parser (RFC 7644 §3.4.2.2): text -> a small AST. Compilation to SQL lives in
``query.py``; evaluation against a resource dict (PATCH value-path filters) in ``patch.py``.

Grammar, loosest binding first::

    filter   := or_expr
    or_expr  := and_expr ("or" and_expr)*
    and_expr := unary ("and" unary)*
    unary    := "not" "(" filter ")" | "(" filter ")" | attr_exp
    attr_exp := path "[" filter "]" ["." sub cmp_op value]     (value path, Entra's ".value eq")
              | path "pr" | path cmp_op value

Operators and attribute names are case-insensitive. Values are JSON literals (strings with
JSON escapes, numbers, true/false/null); an unquoted word is read as a string (Microsoft's
own examples send ``userName sw O``; docs/scim.md). Length, nesting depth and the number of
comparisons are capped so that hostile filters fail fast with 400 ``invalidFilter``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from transom.scim.errors import InvalidFilter
from transom.textpolicy import UnsafeText, check

MAX_FILTER_LENGTH = 4096
MAX_DEPTH = 16
MAX_COMPARISONS = 50

COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})

_PATH = re.compile(r"[A-Za-z_$][\w$\-]*(?::[\w$.\-]+)*(?:\.[A-Za-z_$][\w$\-]*)?")
_WORD = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?=[\s()\[\]]|$)")
_BARE = re.compile(r"[^\s()\[\]\"]+")
_SPACE = re.compile(r"\s*")

Scalar = str | bool | int | float | None


@dataclass(frozen=True)
class Compare:
    path: str
    op: str
    value: Scalar


@dataclass(frozen=True)
class Present:
    path: str


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    expr: Expr


@dataclass(frozen=True)
class ValuePath:
    """``attribute[filter]``: one entry of a multi-valued attribute satisfies ``filter``
    (whose paths are sub-attribute names)."""

    path: str
    filter: Expr


Expr = Compare | Present | And | Or | Not | ValuePath


def parse_filter(text: str) -> Expr:
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilter(f"filter longer than {MAX_FILTER_LENGTH} characters")
    parser = _Parser(text)
    expr = parser.filter(0)
    parser.skip()
    if parser.pos != len(text):
        parser.fail("unexpected text")
    return expr


def parse_value_path(text: str) -> tuple[str, Expr | None, str | None]:
    """A PATCH ``path`` (RFC 7644 §3.5.2): ``attr``, ``attr.sub``, ``attr[filter]`` or
    ``attr[filter].sub`` -> (attribute path, filter, sub-attribute)."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilter("path too long")
    parser = _Parser(text)
    parser.skip()
    path = parser.path()
    flt: Expr | None = None
    sub: str | None = None
    if parser.peek("["):
        parser.pos += 1
        flt = parser.filter(1)
        parser.expect("]")
        if parser.peek("."):
            parser.pos += 1
            sub = parser.path()
    parser.skip()
    if parser.pos != len(text):
        parser.fail("unexpected text in path")
    return path, flt, sub


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.comparisons = 0

    def fail(self, what: str) -> None:
        raise InvalidFilter(f"invalid filter: {what} at position {self.pos}")

    def skip(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()

    def peek(self, token: str) -> bool:
        self.skip()
        return self.text.startswith(token, self.pos)

    def expect(self, token: str) -> None:
        if not self.peek(token):
            self.fail(f"expected '{token}'")
        self.pos += len(token)

    def keyword(self, *words: str) -> str | None:
        """The next word if it is one of ``words`` (case-insensitive) and stands alone."""
        self.skip()
        match = _WORD.match(self.text, self.pos)
        if match and match.group(0).lower() in words:
            end = match.end()
            if end == len(self.text) or not (self.text[end].isalnum() or self.text[end] in "_.:$-"):
                self.pos = end
                return match.group(0).lower()
        return None

    def filter(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            self.fail("nested too deeply")
        left = self.and_expr(depth)
        while self.keyword("or"):
            left = Or(left, self.and_expr(depth))
        return left

    def and_expr(self, depth: int) -> Expr:
        left = self.unary(depth)
        while self.keyword("and"):
            left = And(left, self.unary(depth))
        return left

    def unary(self, depth: int) -> Expr:
        start = self.pos
        if self.keyword("not"):
            if self.peek("("):
                self.pos += 1
                inner = self.filter(depth + 1)
                self.expect(")")
                return Not(inner)
            self.pos = start  # an attribute that happens to be called "not…"
        if self.peek("("):
            self.pos += 1
            inner = self.filter(depth + 1)
            self.expect(")")
            return inner
        return self.attr_exp(depth)

    def path(self) -> str:
        self.skip()
        match = _PATH.match(self.text, self.pos)
        if not match:
            self.fail("expected an attribute name")
            raise AssertionError  # unreachable; fail() raises
        self.pos = match.end()
        return match.group(0)

    def attr_exp(self, depth: int) -> Expr:
        path = self.path()
        if self.peek("["):
            self.pos += 1
            inner = self.filter(depth + 1)
            self.expect("]")
            node: Expr = ValuePath(path, inner)
            if self.peek("."):
                self.pos += 1
                sub = self.path()
                node = ValuePath(path, And(inner, self.comparison(sub)))
            return node
        return self.comparison(path)

    def comparison(self, path: str) -> Expr:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            self.fail(f"more than {MAX_COMPARISONS} comparisons")
        if self.keyword("pr"):
            return Present(path)
        op = self.keyword(*COMPARE_OPS)
        if op is None:
            self.fail("expected an operator (eq ne co sw ew gt ge lt le pr)")
            raise AssertionError
        return Compare(path, op, self.value())

    def value(self) -> Scalar:
        self.skip()
        if self.pos >= len(self.text):
            self.fail("expected a value")
        if self.text[self.pos] == '"':
            return self.string()
        literal = self.keyword("true", "false", "null")
        if literal is not None:
            return {"true": True, "false": False, "null": None}[literal]
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            raw = number.group(0)
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        bare = _BARE.match(self.text, self.pos)
        if not bare:
            self.fail("expected a value")
            raise AssertionError
        self.pos = bare.end()
        return bare.group(0)

    def string(self) -> str:
        end = self.pos + 1
        while end < len(self.text):
            char = self.text[end]
            if char == "\\":
                end += 2
                continue
            if char == '"':
                break
            end += 1
        else:
            self.fail("unterminated string")
        raw = self.text[self.pos:end + 1]
        try:
            value = json.loads(raw)
        except ValueError:
            self.fail("invalid escape in string")
            raise AssertionError from None
        if not isinstance(value, str):
            self.fail("invalid string")
        try:  # an escape can spell what the raw text may not hold (\u0000, a lone \ud800)
            check(value, f"the string at position {self.pos} of the filter")
        except UnsafeText as exc:
            raise InvalidFilter(exc.message, reason=exc.reason) from None
        self.pos = end + 1
        return str(value)
