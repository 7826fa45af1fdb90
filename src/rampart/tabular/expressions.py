"""The small expression language of schema relations, parsed without ``eval``.

A relation compares two arithmetic expressions over feature (column) names::

    total_amount >= amount
    balance_after == balance_before - amount
    abs(a - b) <= 0.1 * max(a, b, 1)

Arithmetic: numbers, names (or any column name in backquotes, ``\\`merchant type\\```),
``+ - * /``, unary minus, parentheses and the functions ``abs(x)``, ``min(x, y, ...)``,
``max(x, y, ...)``; comparisons ``<=``, ``>=``, ``==`` (``<`` and ``>`` read as ``<=`` and
``>=``: on real numbers with a tolerance the difference is meaningless). ``*`` and ``/`` bind
tighter than ``+`` and ``-``; operators of one level group from the left. A hand-written
recursive-descent parser turns the text into a tree; :func:`compile_expression` turns a tree
into a function on ``(n, d)`` tensors, so a relation is batched and differentiable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from rampart.tabular.errors import ExpressionSyntaxError

COMPARISONS = {"<=": "<=", ">=": ">=", "==": "==", "<": "<=", ">": ">="}
FUNCTIONS = {"abs": (1, 1), "min": (2, None), "max": (2, None)}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|`(?P<quoted>[^`]+)`"
    r"|(?P<op><=|>=|==|[-+*/(),<>]))"
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, name, op, end
    text: str
    position: int


# ------------------------------------------------------------------ the tree
@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Column:
    name: str
    position: int


@dataclass(frozen=True)
class Negate:
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # + - * /
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]


Node = Number | Column | Negate | Binary | Call


@dataclass(frozen=True)
class RelationTree:
    """A parsed relation ``left op right`` and the text it came from."""

    left: Node
    op: str  # <=, >=, ==
    right: Node
    text: str


# ------------------------------------------------------------------ tokens
def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token; bad characters raise."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ExpressionSyntaxError(f"unexpected character {text[bad]!r}", text=text,
                                        position=bad)
        kind = match.lastgroup or "op"
        start = match.start(kind)
        value = match.group(kind)
        tokens.append(Token("name" if kind == "quoted" else kind, value, start))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ------------------------------------------------------------------ parser
class _Parser:
    """Recursive descent over the token list: relation, sum, product, unary, atom."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, message: str, token: Token | None = None) -> ExpressionSyntaxError:
        token = token or self.tok
        found = "the end of the relation" if token.kind == "end" else repr(token.text)
        return ExpressionSyntaxError(f"{message}, found {found}", text=self.text,
                                     position=token.position)

    def take(self, text: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == text:
            self.i += 1
            return True
        return False

    def relation(self) -> RelationTree:
        left = self.sum()
        if self.tok.kind != "op" or self.tok.text not in COMPARISONS:
            raise self.fail("expected a comparison (<=, >=, ==) or an operator")
        op = COMPARISONS[self.tok.text]
        self.i += 1
        right = self.sum()
        if self.tok.kind == "op" and self.tok.text in COMPARISONS:
            raise self.fail("a relation has exactly one comparison; write chained ones as "
                            "separate relations")
        if self.tok.kind != "end":
            raise self.fail("expected an operator or the end of the relation")
        return RelationTree(left, op, right, self.text)

    def sum(self) -> Node:
        node = self.product()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.tok.text
            self.i += 1
            node = Binary(op, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in "*/":
            op = self.tok.text
            self.i += 1
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.take("-"):
            return Negate(self.unary())
        if self.take("+"):
            return self.unary()
        return self.atom()

    def atom(self) -> Node:
        token = self.tok
        if token.kind == "number":
            self.i += 1
            return Number(float(token.text))
        if token.kind == "name":
            self.i += 1
            if self.take("("):
                return self.call(token)
            return Column(token.text, token.position)
        if self.take("("):
            node = self.sum()
            if not self.take(")"):
                raise self.fail("expected ')' to close the '(' at position "
                                f"{token.position}")
            return node
        raise self.fail("expected a number, a feature name, a function or '('")

    def call(self, name: Token) -> Node:
        if name.text not in FUNCTIONS:
            raise ExpressionSyntaxError(
                f"unknown function {name.text!r}; use {', '.join(FUNCTIONS)}",
                text=self.text, position=name.position)
        args = [self.sum()]
        while self.take(","):
            args.append(self.sum())
        if not self.take(")"):
            raise self.fail(f"expected ',' or ')' in the call of {name.text}")
        lo, hi = FUNCTIONS[name.text]
        if len(args) < lo or (hi is not None and len(args) > hi):
            wanted = f"exactly {lo}" if lo == hi else f"at least {lo}"
            raise ExpressionSyntaxError(
                f"{name.text}() takes {wanted} argument(s), got {len(args)}",
                text=self.text, position=name.position)
        return Call(name.text, tuple(args))


def parse_relation(text: str) -> RelationTree:
    """Parse ``text`` into a :class:`RelationTree`; raises ``ExpressionSyntaxError``."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionSyntaxError("a relation must be non-empty text like 'a <= b'",
                                    text=str(text), position=0)
    return _Parser(text).relation()


def columns_of(node: Node) -> list[Column]:
    """Every column reference in ``node``, in reading order."""
    if isinstance(node, Column):
        return [node]
    if isinstance(node, Negate):
        return columns_of(node.operand)
    if isinstance(node, Binary):
        return columns_of(node.left) + columns_of(node.right)
    if isinstance(node, Call):
        return [c for arg in node.args for c in columns_of(arg)]
    return []


# ------------------------------------------------------------------ compiling
Compiled = Callable[[torch.Tensor], torch.Tensor]


def compile_expression(node: Node, index: Mapping[str, int]) -> Compiled:
    """A function of an ``(n, d)`` tensor giving the expression's ``(n,)`` values.

    ``index`` maps column names to positions; names must have been checked beforehand.
    """
    if isinstance(node, Number):
        value = node.value
        return lambda x: torch.full((x.shape[0],), value, dtype=x.dtype, device=x.device)
    if isinstance(node, Column):
        j = index[node.name]
        return lambda x: x[:, j]
    if isinstance(node, Negate):
        inner = compile_expression(node.operand, index)
        return lambda x: -inner(x)
    if isinstance(node, Binary):
        a, b = compile_expression(node.left, index), compile_expression(node.right, index)
        ops: dict[str, Compiled] = {
            "+": lambda x: a(x) + b(x), "-": lambda x: a(x) - b(x),
            "*": lambda x: a(x) * b(x), "/": lambda x: a(x) / b(x),
        }
        return ops[node.op]
    if isinstance(node, Call):
        args = [compile_expression(arg, index) for arg in node.args]
        if node.function == "abs":
            return lambda x: args[0](x).abs()
        reduce = torch.minimum if node.function == "min" else torch.maximum

        def fold(x: torch.Tensor) -> torch.Tensor:
            out = args[0](x)
            for arg in args[1:]:
                out = reduce(out, arg(x))
            return out

        return fold
    raise TypeError(f"not an expression node: {node!r}")


def render(node: Node) -> str:
    """The expression as text, fully parenthesised (for tests and messages)."""
    if isinstance(node, Number):
        return f"{node.value:g}"
    if isinstance(node, Column):
        return node.name
    if isinstance(node, Negate):
        return f"(-{render(node.operand)})"
    if isinstance(node, Binary):
        return f"({render(node.left)} {node.op} {render(node.right)})"
    return f"{node.function}({', '.join(render(a) for a in node.args)})"
