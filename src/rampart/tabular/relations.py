"""Relations between features, compiled from the expression language to tensor functions.

Each relation gives three things on an ``(n, d)`` batch:

- ``violation(x)``: how far each row is from satisfying it, in the features' own units
  (``max(left - right, 0)`` for ``<=``, ``|left - right|`` for ``==``); zero when satisfied;
- ``penalty(x)``: the same violation divided by the size of both sides (``|left| + |right| + 1``,
  held constant for the gradient), so that relations over amounts and over counts weigh
  alike in an attack's loss; differentiable almost everywhere;
- ``satisfied(x)``: the checker, ``violation <= atol + rtol * max(|left|, |right|)``.

``solve`` is the repair step: when one side is a single mutable column, it moves that column
to the nearest value that satisfies the relation (e.g. ``balance_after == balance_before -
amount`` sets ``balance_after``).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from rampart.tabular.errors import UnknownFeatureError
from rampart.tabular.expressions import (
    Column,
    Compiled,
    RelationTree,
    columns_of,
    compile_expression,
    parse_relation,
)


@dataclass
class Relation:
    """One compiled relation; build it with :func:`compile_relation`."""

    text: str
    op: str
    left: Compiled = field(repr=False)
    right: Compiled = field(repr=False)
    # Where the repair step may write: (column index, side) for a side that is one column.
    solvable: tuple[tuple[int, str], ...] = ()
    atol: float = 1e-4
    rtol: float = 1e-5

    def sides(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The values of the left and right expressions, ``(n,)`` each."""
        return self.left(x), self.right(x)

    def violation(self, x: torch.Tensor) -> torch.Tensor:
        """How far each row is from satisfying the relation (0 when it does); NaN -> inf."""
        return self._violation(*self.sides(x))

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        """The violation relative to the size of both sides, for an attack's loss."""
        left, right = self.sides(x)
        size = (left.abs() + right.abs()).detach() + 1.0
        return torch.nan_to_num(self._violation(left, right), posinf=1e6) / size

    def tolerance(self, x: torch.Tensor) -> torch.Tensor:
        """The largest violation the checker accepts for each row."""
        return self._tolerance(*self.sides(x))

    def satisfied(self, x: torch.Tensor) -> torch.Tensor:
        """The checker: a boolean per row."""
        with torch.no_grad():
            left, right = self.sides(x)
            return self._violation(left, right) <= self._tolerance(left, right)

    def solve(self, x: torch.Tensor) -> torch.Tensor:
        """Repair rows that violate the relation by moving one single-column side (the first
        of ``solvable``: only mutable columns are listed there). Rows that already satisfy the
        relation keep their value; returns a new tensor (``x`` when nothing is solvable)."""
        if not self.solvable:
            return x
        j, side = self.solvable[0]
        with torch.no_grad():
            left, right = self.sides(x)
            bad = ~(self._violation(left, right) <= self._tolerance(left, right))  # NaN: bad
            other = right if side == "left" else left
            own = left if side == "left" else right
            # The relation read from the column's side: col (op) other.
            op = self.op if side == "left" else {"<=": ">=", ">=": "<=", "==": "=="}[self.op]
            if op == "==":
                target = other
            elif op == "<=":
                target = torch.minimum(own, other)
            else:
                target = torch.maximum(own, other)
            out = x.clone()
            out[:, j] = torch.where(bad, target, x[:, j])
        return out

    def _violation(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        if self.op == "<=":
            v = (left - right).clamp_min(0)
        elif self.op == ">=":
            v = (right - left).clamp_min(0)
        else:
            v = (left - right).abs()
        return torch.nan_to_num(v, nan=float("inf"))

    def _tolerance(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.atol + self.rtol * torch.maximum(left.abs(), right.abs())


def compile_relation(
    text: str,
    index: Mapping[str, int],
    mutable: Collection[str] = (),
    atol: float = 1e-4,
    rtol: float = 1e-5,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> Relation:
    """Parse and compile ``text`` over the columns of ``index`` (name -> position).

    Unknown names raise ``UnknownFeatureError`` with the closest known names (``groups``:
    categorical feature -> its one-hot columns, for a better message when a relation names
    the feature instead of a column). ``mutable`` lists the columns the repair step may move.
    """
    tree = parse_relation(text)
    _check_names(tree, index, groups or {})
    solvable = []
    for side, node in (("left", tree.left), ("right", tree.right)):
        if isinstance(node, Column) and node.name in mutable:
            other = tree.right if side == "left" else tree.left
            if node.name not in {c.name for c in columns_of(other)}:
                solvable.append((index[node.name], side))
    return Relation(
        text=text, op=tree.op, left=compile_expression(tree.left, index),
        right=compile_expression(tree.right, index),
        solvable=tuple(solvable), atol=float(atol), rtol=float(rtol),
    )


def _check_names(tree: RelationTree, index: Mapping[str, int],
                 groups: Mapping[str, Sequence[str]]) -> None:
    for col in columns_of(tree.left) + columns_of(tree.right):
        if col.name in groups:
            raise UnknownFeatureError(
                f"relation {tree.text!r} names the categorical feature {col.name!r} (position "
                f"{col.position}); relations work on columns, so name one of its one-hot "
                f"columns: {', '.join(groups[col.name])}.")
        if col.name not in index:
            close = difflib.get_close_matches(col.name, list(index), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else (
                f"known columns: {', '.join(list(index)[:12])}"
                + (" ..." if len(index) > 12 else ""))
            raise UnknownFeatureError(
                f"relation {tree.text!r} names {col.name!r} (position {col.position}), which "
                f"is not a column of the schema; {hint} Declare the feature under features: "
                "or fix the name."
            )
