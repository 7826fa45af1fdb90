"""The settings of one feature in a schema file, validated with pydantic.

A feature is ``real``, ``integer`` or ``categorical`` (a one-hot group of columns named by
``columns``). It may be immutable (``mutable: false``: the attacker cannot change it, e.g.
account age or country), have fixed bounds (``min``/``max``) and bounds relative to the input:
``max_increase``/``max_decrease`` in the feature's units, ``max_rel_increase``/
``max_rel_decrease`` as a fraction of the input's magnitude (``0.2``: at most 20% up).
``scale`` sets the unit of the attack budget for the feature (by default the data's standard
deviation, see ``FeatureSchema.calibrate``). Relations are text (``"a <= b"``) or a mapping
with their own tolerance (``{relation: "a <= b", atol: 0.5}``).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FeatureType = Literal["real", "integer", "categorical"]


class FeatureSpec(BaseModel):
    """One feature's entry under ``features:``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: FeatureType = "real"
    mutable: bool = True
    min: float | None = None
    max: float | None = None
    max_increase: float | None = Field(None, ge=0)
    max_decrease: float | None = Field(None, ge=0)
    max_rel_increase: float | None = Field(None, ge=0)
    max_rel_decrease: float | None = Field(None, ge=0)
    scale: float | None = Field(None, gt=0)
    columns: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.min is not None and self.max is not None and not self.min <= self.max:
            raise ValueError(f"min ({self.min:g}) must not exceed max ({self.max:g})")
        for key in ("min", "max"):
            value = getattr(self, key)
            if value is not None and math.isnan(value):
                raise ValueError(f"{key} must be a number, not NaN")
        if self.type == "categorical":
            if not self.columns or len(self.columns) < 2:
                raise ValueError("a categorical feature lists its one-hot columns (at least "
                                 "two) under columns: [...]")
            if len(set(self.columns)) != len(self.columns):
                raise ValueError("the columns of a categorical feature must be distinct")
            relative = ("min", "max", "max_increase", "max_decrease", "max_rel_increase",
                        "max_rel_decrease", "scale")
            given = [k for k in relative if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} do not apply to a categorical feature "
                                 "(its one-hot columns are 0 or 1)")
        elif self.columns is not None:
            raise ValueError("columns: only applies to type: categorical")
        return self

    @property
    def column_names(self) -> list[str]:
        """The data columns of this feature: its one-hot columns, or its own name."""
        return list(self.columns) if self.columns else [self.name]


class ToleranceSpec(BaseModel):
    """How far a relation may be off and still count as satisfied."""

    model_config = ConfigDict(extra="forbid")

    atol: float = Field(1e-4, ge=0)
    rtol: float = Field(1e-5, ge=0)


class RelationSpec(BaseModel):
    """A relation with its own tolerance: ``{relation: "a <= b", atol: 0.5}``."""

    model_config = ConfigDict(extra="forbid")

    relation: str
    atol: float | None = Field(None, ge=0)
    rtol: float | None = Field(None, ge=0)


class SchemaSpec(BaseModel):
    """A whole schema file: features, relations (text, or a mapping with its own
    tolerance), the default tolerance and the label column."""

    model_config = ConfigDict(extra="forbid")

    features: list[FeatureSpec] = Field(min_length=1)
    relations: list[str | RelationSpec] = []
    tolerance: ToleranceSpec = ToleranceSpec()
    label: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _named_mapping(cls, data: object) -> object:
        """Accept ``features:`` as a mapping ``name: {settings}`` as well as a list."""
        if isinstance(data, dict) and isinstance(data.get("features"), dict):
            data = dict(data)
            data["features"] = [
                {"name": name, **(settings or {})} if isinstance(settings, dict | None)
                else {"name": name, "type": settings}
                for name, settings in data["features"].items()
            ]
        return data

    @model_validator(mode="after")
    def _unique(self) -> SchemaSpec:
        seen: dict[str, str] = {}
        for feature in self.features:
            for col in feature.column_names:
                if col in seen:
                    raise ValueError(f"column {col!r} is declared twice (by {seen[col]!r} and "
                                     f"{feature.name!r}); give every column one feature")
                seen[col] = feature.name
        if self.label is not None and self.label in seen:
            raise ValueError(f"the label column {self.label!r} is also declared as a feature; "
                             "remove it from features:")
        return self
