"""Where an attacker may move a batch of rows, and the repair that puts a point back there.

``ConstrainedRegion`` combines, per element, the attack budget (``eps`` times the feature's
scale: an linf ball in scaled units), the schema's fixed bounds and input-relative bounds,
and frozen immutable features into one box. ``repair`` then makes a point of that box valid:
one-hot groups become the one-hot vector of their largest entry, relations with a single
mutable column on one side are solved for that column, integers are rounded inside the box.
``violations`` is the checker: which constraint each row breaks.

``BudgetRegion`` is the same budget without the schema (the "unconstrained" attack): every
column may move by ``eps * scale`` and nothing is repaired.
"""

from __future__ import annotations

import torch

from rampart.tabular.schema import FeatureSchema

REPAIR_ROUNDS = 3
BOX_TOLERANCE = 1e-5
# The attributes with one row per sample, which ``subset`` selects.
_ROWS = frozenset({"x", "scales", "lower", "upper", "movable", "integer", "valid_lower",
                   "valid_upper", "tol"})


class BudgetRegion:
    """The linf budget around ``x`` in scaled units, and nothing else."""

    def __init__(self, schema: FeatureSchema, x: torch.Tensor, eps: float) -> None:
        t = schema.tensors_like(x)
        self.schema, self.x, self.eps = schema, x, float(eps)
        self.scales = t["scales"].expand_as(x)
        self.lower = x - eps * self.scales
        self.upper = x + eps * self.scales
        self.movable = torch.ones_like(x, dtype=torch.bool)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """The closest point of the box."""
        return torch.maximum(torch.minimum(z, self.upper), self.lower)

    def repair(self, z: torch.Tensor) -> torch.Tensor:
        """Nothing to repair beyond the box."""
        return self.project(z)

    def subset(self, keep: torch.Tensor) -> BudgetRegion:
        """The region of the rows selected by ``keep`` (a mask or indices)."""
        out = object.__new__(type(self))
        out.__dict__.update({k: v[keep] if k in _ROWS else v for k, v in self.__dict__.items()})
        return out


class ConstrainedRegion(BudgetRegion):
    """The budget box intersected with every constraint of ``schema`` around ``x``.

    The checker's per-row tensors (the valid bounds and the change tolerance) are computed
    here once, not at every ``violations`` call of an attack's loop.
    """

    def __init__(self, schema: FeatureSchema, x: torch.Tensor, eps: float) -> None:
        super().__init__(schema, x, eps)
        t = schema.tensors_like(x)
        mutable = t["mutable"].expand_as(x)
        onehot = t["onehot"].expand_as(x)
        lower, upper = relative_bounds(schema, x, t)
        self.valid_lower, self.valid_upper = torch.minimum(lower, x), torch.maximum(upper, x)
        self.tol = change_tolerance(x)
        # A mutable category may switch to any other; numeric features keep the budget.
        lower = torch.where(onehot, lower, torch.maximum(lower, self.lower))
        upper = torch.where(onehot, upper, torch.minimum(upper, self.upper))
        # Immutable features are frozen; an input already outside a bound stays allowed.
        lower = torch.where(mutable, torch.minimum(lower, x), x)
        upper = torch.where(mutable, torch.maximum(upper, x), x)
        integer = t["integer"].expand_as(x)
        self.lower = torch.where(integer, torch.minimum(lower.ceil(), x), lower)
        self.upper = torch.where(integer, torch.maximum(upper.floor(), x), upper)
        self.movable = mutable
        self.integer = integer

    def repair(self, z: torch.Tensor) -> torch.Tensor:
        """A valid point near ``z``: box, one-hot argmax, relations solved, integers rounded.

        The steps alternate a few rounds because solving a relation can leave the box or
        break integrality; what is still invalid afterwards is caught by ``violations``.
        """
        z = self.project(z.detach())
        for cols in self.schema.groups:
            block = z[:, cols]
            z[:, cols] = torch.nn.functional.one_hot(block.argmax(dim=1), len(cols)).to(z.dtype)
        for _ in range(REPAIR_ROUNDS):
            for relation in self.schema.relations:
                z = relation.solve(z)
            z = self.project(torch.where(self.integer, z.round(), z))
        return z

    def violations(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The constraints each row of ``z`` breaks: a boolean ``(n,)`` mask per kind."""
        with torch.no_grad():
            return _violations(self.schema, self.x, z, self.movable, self.integer,
                               (self.valid_lower, self.valid_upper), self.tol,
                               (self.lower, self.upper))


def relative_bounds(schema: FeatureSchema, x: torch.Tensor,
                    t: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed and input-relative bounds of every element of ``x`` (no attack budget);
    ``t`` is ``schema.tensors_like(x)`` when the caller has it."""
    t = schema.tensors_like(x) if t is None else t
    # inf * 0 (no relative bound, input 0) is NaN: no bound there either.
    dec = torch.nan_to_num(t["max_rel_decrease"] * x.abs(), nan=float("inf"))
    inc = torch.nan_to_num(t["max_rel_increase"] * x.abs(), nan=float("inf"))
    lower = torch.maximum(torch.maximum(t["lower"], x - t["max_decrease"]), x - dec)
    upper = torch.minimum(torch.minimum(t["upper"], x + t["max_increase"]), x + inc)
    return lower, upper


def violations(
    schema: FeatureSchema,
    x: torch.Tensor,
    z: torch.Tensor,
    budget: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Which constraints of ``schema`` each row of ``z`` (the perturbed ``x``) breaks.

    Keys: ``immutable``, ``integer``, ``one-hot``, ``bounds`` (fixed and input-relative),
    ``budget`` (only when ``budget`` boxes are given) and ``relation: <text>`` per relation.
    Every value is a boolean ``(n,)`` mask (True: violated).
    """
    with torch.no_grad():
        t = schema.tensors_like(x)
        lower, upper = relative_bounds(schema, x, t)
        valid = (torch.minimum(lower, x), torch.maximum(upper, x))
        return _violations(schema, x, z, t["mutable"], t["integer"], valid, change_tolerance(x),
                           budget)


def change_tolerance(x: torch.Tensor) -> torch.Tensor:
    """How far an element of ``x`` may move and still count as unchanged (or in a bound)."""
    return BOX_TOLERANCE * (1.0 + x.abs())


def _violations(
    schema: FeatureSchema,
    x: torch.Tensor,
    z: torch.Tensor,
    mutable: torch.Tensor,
    integer: torch.Tensor,
    valid: tuple[torch.Tensor, torch.Tensor],
    tol: torch.Tensor,
    budget: tuple[torch.Tensor, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """:func:`violations` from the per-column masks and per-element bounds it needs."""
    changed = (z - x).abs() > tol
    out = {"immutable": (changed & ~mutable).any(dim=1)}
    out["integer"] = (integer & ((z - z.round()).abs() > 1e-4)).any(dim=1)
    onehot = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    for cols in schema.groups:
        block = z[:, cols]
        ok = ((block - block.round()).abs() <= 1e-4).all(dim=1) & \
            ((block.round().sum(dim=1) - 1).abs() < 0.5) & (block.round() >= 0).all(dim=1)
        onehot |= ~ok
    out["one-hot"] = onehot
    out["bounds"] = ((z < valid[0] - tol) | (z > valid[1] + tol)).any(dim=1)
    if budget is not None:
        out["budget"] = ((z < budget[0] - tol) | (z > budget[1] + tol)).any(dim=1)
    for relation in schema.relations:
        out[f"relation: {relation.text}"] = ~relation.satisfied(z)
    return out


def any_violation(found: dict[str, torch.Tensor]) -> torch.Tensor:
    """True for rows that break at least one constraint."""
    masks = list(found.values())
    out = torch.zeros_like(masks[0])
    for mask in masks:
        out = out | mask
    return out
