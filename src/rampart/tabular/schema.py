"""``FeatureSchema``: what an attacker may change in a row of tabular data, compiled to tensors.

Built from a YAML/JSON file (:meth:`FeatureSchema.from_yaml`) or a dict
(:meth:`FeatureSchema.from_dict`), it holds per column: mutable or not, integer or not, fixed
bounds, input-relative bounds and the attack's budget unit (``scales``), the one-hot groups of
categorical features, and the compiled relations. :meth:`check_data` refuses data the schema
contradicts, naming the column and row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rampart.config_files import read_config_file, validate
from rampart.errors import ConfigError
from rampart.tabular.errors import SchemaDataError, SchemaError
from rampart.tabular.features import FeatureSpec, SchemaSpec
from rampart.tabular.relations import Relation, compile_relation

EXAMPLE = """\
label: is_fraud
features:
  amount: {type: real, min: 0, max_rel_increase: 0.5}
  num_tx_24h: {type: integer, min: 0}
  num_tx_7d: {type: integer, min: 0}
  account_age_days: {type: integer, mutable: false}
  country: {type: categorical, mutable: false, columns: [country_a, country_b]}
relations:
  - num_tx_24h <= num_tx_7d
  - {relation: "amount <= 10 * num_tx_7d + 5000", atol: 0.5}
tolerance: {atol: 0.0001, rtol: 0.00001}"""
_SHOWN_ROWS = 5


class FeatureSchema:
    """A compiled feature schema over ``columns`` (the data's column order).

    Tensors (float32, one entry per column): ``mutable``, ``integer`` and ``onehot`` (bool;
    ``onehot``: the column belongs to a categorical feature's group), ``lower`` /
    ``upper`` (fixed bounds, +-inf when none), ``max_increase`` / ``max_decrease`` (absolute,
    inf when none), ``max_rel_increase`` / ``max_rel_decrease`` (fractions, inf when none),
    ``scales`` (the unit of the attack budget). ``groups`` lists the column indices of each
    one-hot group; ``relations`` the compiled relations.
    """

    def __init__(self, spec: SchemaSpec) -> None:
        self.features: list[FeatureSpec] = list(spec.features)
        self.columns: list[str] = [c for f in self.features for c in f.column_names]
        self.index: dict[str, int] = {c: i for i, c in enumerate(self.columns)}
        self.label = spec.label
        d = len(self.columns)
        inf = math.inf
        self.mutable = torch.zeros(d, dtype=torch.bool)
        self.integer = torch.zeros(d, dtype=torch.bool)
        self.onehot = torch.zeros(d, dtype=torch.bool)
        self.lower = torch.full((d,), -inf)
        self.upper = torch.full((d,), inf)
        self.max_increase = torch.full((d,), inf)
        self.max_decrease = torch.full((d,), inf)
        self.max_rel_increase = torch.full((d,), inf)
        self.max_rel_decrease = torch.full((d,), inf)
        self.scales = torch.ones(d)
        self._fixed_scale = torch.zeros(d, dtype=torch.bool)
        self.groups: list[list[int]] = []
        self.feature_of: list[str] = []
        for f in self.features:
            cols = [self.index[c] for c in f.column_names]
            self.feature_of.extend([f.name] * len(cols))
            self.mutable[cols] = f.mutable
            if f.type == "categorical":
                self.groups.append(cols)
                self.onehot[cols] = True
                self.lower[cols], self.upper[cols] = 0.0, 1.0
                self.integer[cols] = True
                self._fixed_scale[cols] = True
                continue
            j = cols[0]
            self.integer[j] = f.type == "integer"
            for name in ("min", "max"):
                value = getattr(f, name)
                if value is not None:
                    (self.lower if name == "min" else self.upper)[j] = value
            for name in ("max_increase", "max_decrease", "max_rel_increase", "max_rel_decrease"):
                value = getattr(f, name)
                if value is not None:
                    getattr(self, name)[j] = value
            if f.scale is not None:
                self.scales[j] = f.scale
                self._fixed_scale[j] = True
        mutable_cols = [c for c in self.columns if bool(self.mutable[self.index[c]])]
        tol = spec.tolerance
        groups = {f.name: f.column_names for f in self.features if f.type == "categorical"}
        self.relations: list[Relation] = []
        for entry in spec.relations:
            text, atol, rtol = (entry, None, None) if isinstance(entry, str) else \
                (entry.relation, entry.atol, entry.rtol)
            self.relations.append(compile_relation(
                text, self.index, mutable_cols, tol.atol if atol is None else atol,
                tol.rtol if rtol is None else rtol, groups))

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the feature schema") -> FeatureSchema:
        """A schema from a mapping shaped like the YAML file (see ``EXAMPLE``)."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"{where} must be a mapping with features: and relations:; "
                              f"for example:\n{EXAMPLE}")
        try:
            spec = validate(SchemaSpec, dict(data), where)
        except SchemaError:
            raise
        except ConfigError as exc:
            raise SchemaError(f"{exc}\nFor example:\n{EXAMPLE}") from None
        return cls(spec)

    @classmethod
    def from_yaml(cls, path: str | Path) -> FeatureSchema:
        """A schema from a YAML (or ``.json``) file."""
        try:
            data = read_config_file(path, "feature schema", EXAMPLE)
        except SchemaError:
            raise
        except ConfigError as exc:
            raise SchemaError(str(exc)) from None
        return cls.from_dict(data, where=f"the feature schema {path}")

    def calibrate(self, x: torch.Tensor | np.ndarray) -> FeatureSchema:
        """Set the budget unit of every real/integer feature without an explicit ``scale``
        to the data's standard deviation (1 for constant columns); returns ``self``."""
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        std = xt.std(dim=0) if xt.shape[0] > 1 else torch.ones(xt.shape[1])
        std = torch.where(std > 0, std, torch.ones_like(std))
        self.scales = torch.where(self._fixed_scale, self.scales, std)
        return self

    def __len__(self) -> int:
        return len(self.columns)

    def __repr__(self) -> str:
        return (f"FeatureSchema({len(self.features)} features, {len(self.columns)} columns, "
                f"{len(self.relations)} relations)")

    # ------------------------------------------------------------------ constraints
    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the relations' relative violations per row (differentiable); zeros when
        there are no relations."""
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for relation in self.relations:
            total = total + relation.penalty(x)
        return total

    def tensors_like(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-column tensors on ``x``'s device and dtype."""
        names = ("lower", "upper", "max_increase", "max_decrease", "max_rel_increase",
                 "max_rel_decrease", "scales")
        out = {k: getattr(self, k).to(device=x.device, dtype=x.dtype) for k in names}
        out["mutable"] = self.mutable.to(x.device)
        out["integer"] = self.integer.to(x.device)
        out["onehot"] = self.onehot.to(x.device)
        return out

    def check_data(self, x: torch.Tensor | np.ndarray, where: str = "the data",
                   first_row: int = 0) -> None:
        """Raise ``SchemaDataError`` where ``x`` contradicts the schema.

        Checks: the column count, finite values, fixed bounds, integral integer features,
        valid one-hot groups and relations (within their tolerance). Rows are reported
        counting from ``first_row`` (e.g. 2 for a CSV file's first data line).
        """
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
        if xt.ndim != 2 or xt.shape[1] != len(self.columns):
            raise SchemaDataError(
                f"{where} has shape {tuple(xt.shape)} but the schema declares "
                f"{len(self.columns)} columns ({', '.join(self.columns[:8])}"
                f"{' ...' if len(self.columns) > 8 else ''}); give the rows in that order.")
        t = self.tensors_like(xt)
        finite = torch.isfinite(xt)
        self._refuse(~finite, where, first_row, "is empty, NaN or infinite",
                     "fill or drop those rows")
        for cols in self.groups:
            block = xt[:, cols]
            bad = ~(((block == 0) | (block == 1)).all(dim=1) & (block.sum(dim=1) == 1))
            if bool(bad.any()):
                rows = self._rows(bad, first_row)
                feature = self.feature_of[cols[0]]
                names = ", ".join(self.columns[c] for c in cols)
                raise SchemaDataError(
                    f"{where}: the one-hot group of {feature!r} ({names}) is not "
                    f"one-hot in {rows}; each row needs exactly one 1 and 0s elsewhere. "
                    "Fix the encoding or list the group's columns correctly.")
        slack = 1e-6 * (1.0 + xt.abs())  # the bounds are stored as float32
        self._refuse(xt < t["lower"] - slack, where, first_row, "is below the declared min",
                     "widen min in the schema or fix the data")
        self._refuse(xt > t["upper"] + slack, where, first_row, "is above the declared max",
                     "widen max in the schema or fix the data")
        self._refuse(t["integer"] & ((xt - xt.round()).abs() > 1e-6), where, first_row,
                     "is not a whole number but the feature is integer",
                     "declare it type: real or round the data")
        for relation in self.relations:
            bad = ~relation.satisfied(xt)
            if bool(bad.any()):
                rows = self._rows(bad, first_row)
                worst = float(relation.violation(xt)[bad].max())
                raise SchemaDataError(
                    f"{where} already violates the relation {relation.text!r} in "
                    f"{int(bad.sum())} row(s) ({rows}; worst violation {worst:.4g}, tolerance "
                    f"atol={relation.atol:g}, rtol={relation.rtol:g}); fix the relation, raise "
                    "tolerance: in the schema, or clean those rows.")

    def _refuse(self, bad: torch.Tensor, where: str, first_row: int, what: str,
                todo: str) -> None:
        if not bool(bad.any()):
            return
        rows, cols = bad.nonzero(as_tuple=True)
        col = int(cols[0])
        in_col = bad[:, col]
        raise SchemaDataError(
            f"{where}: column {self.columns[col]!r} {what} in {int(in_col.sum())} row(s) "
            f"({self._rows(in_col, first_row)}); {todo}.")

    @staticmethod
    def _rows(mask: torch.Tensor, first_row: int) -> str:
        rows = (mask.nonzero().flatten()[:_SHOWN_ROWS] + first_row).tolist()
        more = " ..." if int(mask.sum()) > _SHOWN_ROWS else ""
        return "row " + ", ".join(str(r) for r in rows) + more


def load_schema(schema: FeatureSchema | Mapping[str, Any] | str | Path) -> FeatureSchema:
    """A schema from a ``FeatureSchema``, a dict or a YAML/JSON path."""
    if isinstance(schema, FeatureSchema):
        return schema
    if isinstance(schema, Mapping):
        return FeatureSchema.from_dict(schema)
    return FeatureSchema.from_yaml(schema)
