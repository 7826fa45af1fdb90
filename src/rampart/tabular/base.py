"""What the tabular attacks share: the schema they respect and the region they work in.

``SchemaAttack`` is an ``Attack`` configured with a ``FeatureSchema``; ``constrained=False``
turns it into its own unconstrained baseline (the same budget, no schema), which the audit
runs next to it.
"""

from __future__ import annotations

from typing import Any

import torch

from rampart.attacks.base import Attack
from rampart.errors import ConfigError
from rampart.tabular.region import BudgetRegion, ConstrainedRegion
from rampart.tabular.schema import FeatureSchema, load_schema


class SchemaAttack(Attack):
    """An attack on rows that follow ``schema`` (linf budget in feature scales)."""

    norms = ("linf",)

    def __init__(self, schema: FeatureSchema | dict | str, constrained: bool = True,
                 seed: int = 0, **options: Any) -> None:
        super().__init__(seed=seed, **options)  # options: for a second base (QueryAttack)
        self._schema = load_schema(schema)
        self.constrained = bool(constrained)

    @property
    def schema(self) -> FeatureSchema:
        """The feature schema the attack respects (when ``constrained``)."""
        return self._schema

    def _region(self, x: torch.Tensor, eps: float) -> BudgetRegion:
        """The region of this batch: the schema's constraints, or the budget alone."""
        check_columns(self._schema, x)
        region_cls = ConstrainedRegion if self.constrained else BudgetRegion
        return region_cls(self._schema, x, eps)


def check_columns(schema: FeatureSchema, x: torch.Tensor) -> None:
    """Refuse data whose rows do not have the schema's column count."""
    if x.ndim != 2 or x.shape[1] != len(schema):
        raise ConfigError(
            f"the data has shape {tuple(x.shape)} but the schema declares {len(schema)} "
            "columns; load the rows with rampart.tabular.load_csv or order them like "
            "schema.columns.")
