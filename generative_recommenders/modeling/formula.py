"""Loss formulas as expression trees: a small safe parser (no ``eval``) and a torch evaluator.

A formula is written in infix with function calls, e.g. ``softplus(neg - pos)`` (BPR) or
``max(0, 1 - pos + neg)`` (hinge). Its variables are either *pairwise*, ``pos`` (the positive's
score) and ``neg`` (one negative's score), or *pointwise*, ``score`` and ``label`` (1 for the
positive, 0 for a negative); one formula uses one family. Scores are the logits after the
temperature. Operators (AutoLossGen's set and a few common ones):

- binary: ``+ - * /``, ``add(a, b)``, ``mul(a, b)``, ``max(a, b)``, ``min(a, b)``
- unary: ``neg``, ``log``, ``exp``, ``reciprocal``, ``softplus``, ``sigmoid``, ``abs``
- safe forms that stay finite: ``safe_log(x) = log(|x| + 1e-6)``,
  ``safe_exp(x) = exp(min(x, 20))``, ``safe_reciprocal(x) = x / (x^2 + 1e-6)``

:func:`parse` turns text into a tree of :class:`Node`; :meth:`Node.evaluate` computes it on tensors
(broadcasting); :meth:`Node.infix` and :meth:`Node.prefix` print it back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-6
PAIRWISE = ("pos", "neg")
POINTWISE = ("score", "label")
VARIABLES = PAIRWISE + POINTWISE

UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "neg": torch.neg,
    "log": torch.log,
    "exp": torch.exp,
    "reciprocal": torch.reciprocal,
    "softplus": F.softplus,
    "sigmoid": torch.sigmoid,
    "abs": torch.abs,
    "safe_log": lambda x: torch.log(x.abs() + EPS),
    "safe_exp": lambda x: torch.exp(x.clamp(max=20.0)),
    "safe_reciprocal": lambda x: x / (x * x + EPS),
}
BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "max": torch.maximum,
    "min": torch.minimum,
}
_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_TOKEN = re.compile(
    r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z_]\w*)|(.))"
)


class FormulaError(ValueError):
    """A formula that does not parse, or uses an unknown operator or variable."""


@dataclass(frozen=True)
class Node:
    """A formula tree: ``op`` is "const", "var", or an operator name; ``args`` its children."""

    op: str
    args: tuple[Node, ...] = ()
    value: float = 0.0
    name: str = ""

    def evaluate(self, env: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The formula's value, broadcast over the variables' shapes (a constant is a 0-d tensor)."""
        if self.op == "const":
            some = next(iter(env.values()))
            return torch.tensor(self.value, dtype=some.dtype, device=some.device)
        if self.op == "var":
            return env[self.name]
        values = [arg.evaluate(env) for arg in self.args]
        if self.op in UNARY:
            return UNARY[self.op](values[0])
        left, right = torch.broadcast_tensors(*values)
        return BINARY[self.op](left, right)

    def folded(self) -> Node:
        """The same formula with every variable-free subtree replaced by its value."""
        if self.op in ("const", "var"):
            return self
        args = tuple(arg.folded() for arg in self.args)
        if all(arg.op == "const" for arg in args):
            value = Node(self.op, args).evaluate({"_": torch.zeros((), dtype=torch.float64)})
            return const(float(value))
        return Node(self.op, args)

    def variables(self) -> set[str]:
        if self.op == "var":
            return {self.name}
        return set().union(*(arg.variables() for arg in self.args)) if self.args else set()

    def size(self) -> int:
        return 1 + sum(arg.size() for arg in self.args)

    def infix(self) -> str:
        """Readable text that :func:`parse` reads back to the same tree."""
        if self.op == "const":
            return _number(self.value)
        if self.op == "var":
            return self.name
        if self.op in _INFIX:
            left, right = (arg.infix() for arg in self.args)
            return f"({left} {_INFIX[self.op]} {right})"
        return f"{self.op}({', '.join(_bare(arg.infix()) for arg in self.args)})"

    def text(self) -> str:
        """:meth:`infix` without the outermost parentheses."""
        return _bare(self.infix())

    def prefix(self) -> str:
        """Canonical prefix text (used to recognise the same formula twice)."""
        if self.op == "const":
            return _number(self.value)
        if self.op == "var":
            return self.name
        return f"{self.op}({','.join(arg.prefix() for arg in self.args)})"


def const(value: float) -> Node:
    return Node("const", value=float(value))


def var(name: str) -> Node:
    return Node("var", name=name)


def call(op: str, *args: Node) -> Node:
    return Node(op, tuple(args))


def _bare(text: str) -> str:
    """Drop one pair of parentheses that encloses the whole text."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and index < len(text) - 1:
            return text
    return text[1:-1]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def parse(text: str) -> Node:
    """Parse ``text`` into a :class:`Node`.

    Raises:
        FormulaError: one line saying what was expected where, or which name is unknown.
    """
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("empty formula")
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    node = parser.expression()
    if parser.peek() is not None:
        raise FormulaError(f"unexpected {parser.peek()[1]!r} at position {parser.peek()[2]}")
    names = node.variables()
    if names & set(PAIRWISE) and names & set(POINTWISE):
        raise FormulaError(
            f"mixes pairwise ({', '.join(PAIRWISE)}) and pointwise ({', '.join(POINTWISE)}) "
            "variables; use one family"
        )
    return node


def family(node: Node) -> str:
    """``"pointwise"`` when the formula uses score/label, else ``"pairwise"``."""
    return "pointwise" if node.variables() & set(POINTWISE) else "pairwise"


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            break
        number, name, symbol = match.groups()
        start = match.start(match.lastindex) if match.lastindex else position
        if number is not None:
            tokens.append(("number", number, start))
        elif name is not None:
            tokens.append(("name", name, start))
        elif symbol is not None and symbol.strip():
            if symbol not in "+-*/(),":
                raise FormulaError(f"unexpected character {symbol!r} at position {start}")
            tokens.append(("symbol", symbol, start))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent: expression := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
    unary := '-' unary | primary; primary := number | variable | name '(' args ')' | '(' expr ')'."""

    def __init__(self, tokens: list[tuple[str, str, int]], text: str) -> None:
        self.tokens, self.index, self.text = tokens, 0, text

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, symbol: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            wanted = repr(symbol) if symbol else "more"
            raise FormulaError(f"expected {wanted} at the end (position {len(self.text)})")
        if symbol is not None and token[1] != symbol:
            raise FormulaError(f"expected {symbol!r} at position {token[2]}, found {token[1]!r}")
        self.index += 1
        return token

    def expression(self) -> Node:
        node = self.term()
        while self.peek() is not None and self.peek()[1] in "+-" and self.peek()[0] == "symbol":
            op = "add" if self.take()[1] == "+" else "sub"
            node = call(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek() is not None and self.peek()[1] in "*/" and self.peek()[0] == "symbol":
            op = "mul" if self.take()[1] == "*" else "div"
            node = call(op, node, self.unary())
        return node

    def unary(self) -> Node:
        token = self.peek()
        if token is not None and token[0] == "symbol" and token[1] == "-":
            self.take()
            inner = self.unary()
            return const(-inner.value) if inner.op == "const" else call("neg", inner)
        return self.primary()

    def primary(self) -> Node:
        kind, text, position = self.take()
        if kind == "number":
            value = float(text)
            if not math.isfinite(value):
                raise FormulaError(f"number {text!r} at position {position} is not finite")
            return const(value)
        if kind == "symbol" and text == "(":
            node = self.expression()
            self.take(")")
            return node
        if kind == "name":
            following = self.peek()
            if following is not None and following[1] == "(":
                return self.function(text, position)
            if text not in VARIABLES:
                raise FormulaError(
                    f"unknown variable {text!r} at position {position}; "
                    f"known: {', '.join(VARIABLES)}"
                )
            return var(text)
        raise FormulaError(f"unexpected {text!r} at position {position}")

    def function(self, name: str, position: int) -> Node:
        if name in UNARY:
            arity = 1
        elif name in BINARY:
            arity = 2
        else:
            known = ", ".join(sorted(UNARY) + sorted(BINARY))
            raise FormulaError(f"unknown operator {name!r} at position {position}; known: {known}")
        self.take("(")
        args = [self.expression()]
        while self.peek() is not None and self.peek()[1] == ",":
            self.take(",")
            args.append(self.expression())
        self.take(")")
        if len(args) != arity:
            raise FormulaError(
                f"{name} at position {position} takes {arity} argument(s), got {len(args)}"
            )
        return call(name, *args)
