"""Threat models as data: what the adversary may change, how much, and what it knows.

A ``ThreatModel`` is validated on creation and round-trips through YAML and JSON, so the
same file drives the CLI, an audit config and a CI gate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rampart.errors import ConfigError

Norm = Literal["linf", "l2", "l1"]
Knowledge = Literal["white-box", "score", "decision", "transfer"]
TargetMode = Literal["random", "least-likely"]

_NORM_ALIASES = {"inf": "linf", "linf": "linf", "l_inf": "linf", "2": "l2", "l2": "l2",
                 "1": "l1", "l1": "l1"}


class ThreatModel(BaseModel):
    """The adversary's capabilities.

    Attributes:
        norm: the perturbation norm, ``linf``, ``l2`` or ``l1``.
        eps: the budget, one value or a list (an attack runs once per value).
        targeted: ``False`` (untargeted), ``"random"`` or ``"least-likely"`` target classes,
            or explicit target labels (one int for every sample, or one per sample).
        knowledge: ``white-box`` (gradients), ``score`` (output scores), ``decision``
            (labels only) or ``transfer`` (a surrogate model).
        query_budget: the most model queries allowed per sample (black-box attacks).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    norm: Norm = "linf"
    eps: float | list[float]
    targeted: Literal[False] | TargetMode | int | list[int] = False
    knowledge: Knowledge = "white-box"
    query_budget: int | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    # ------------------------------------------------------------------ validation
    @field_validator("norm", mode="before")
    @classmethod
    def _norm_alias(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            key = str(value).strip().lower().replace("-", "_")
            if key in _NORM_ALIASES:
                return _NORM_ALIASES[key]
            raise ValueError(f"unknown norm {value!r}; use one of linf, l2, l1")
        return value

    @field_validator("eps", mode="before")
    @classmethod
    def _eps_values(cls, value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [value]
        if not values:
            raise ValueError("give at least one eps value")
        checked = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"eps must be a number or a list of numbers, got {v!r}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"eps must be finite and >= 0, got {v}")
            checked.append(float(v))
        return checked if isinstance(value, list | tuple) else checked[0]

    @field_validator("targeted", mode="before")
    @classmethod
    def _targeted(cls, value: Any) -> Any:
        if value is None or value is False:
            return False
        if value is True:
            raise ValueError(
                "say which targets: 'random', 'least-likely', a class index, or a list of "
                "class indices (one per sample)"
            )
        if isinstance(value, str):
            key = value.strip().lower().replace("_", "-")
            if key in ("false", "no", "none", "untargeted"):
                return False
            if key in ("random", "least-likely"):
                return key
            if key.lstrip("-").isdigit():
                return int(key)
            raise ValueError(
                f"unknown target mode {value!r}; use false, random, least-likely or class labels"
            )
        if isinstance(value, int) and value < 0 or isinstance(value, list | tuple) and any(
            isinstance(v, int) and v < 0 for v in value
        ):
            raise ValueError("target labels must be class indices >= 0")
        return value

    @field_validator("query_budget")
    @classmethod
    def _budget(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"query_budget must be at least 1, got {value}")
        return value

    # ------------------------------------------------------------------ views
    @property
    def eps_values(self) -> list[float]:
        """The budget(s) as a list, in the order given."""
        return list(self.eps) if isinstance(self.eps, list) else [self.eps]

    @property
    def single_eps(self) -> float:
        """The one budget of this threat; a clear error when it lists several."""
        values = self.eps_values
        if len(values) != 1:
            raise ConfigError(
                f"this threat model lists {len(values)} eps values {values}; an attack runs at "
                "one budget: call it once per value with threat.at(eps)."
            )
        return values[0]

    @property
    def is_targeted(self) -> bool:
        """Whether the adversary aims at chosen classes."""
        return self.targeted is not False

    def at(self, eps: float) -> ThreatModel:
        """The same threat at a single budget (validated like any other)."""
        return ThreatModel(**{**self.to_dict(), "eps": eps})

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``linf eps=0.3 untargeted white-box``."""
        eps = ",".join(f"{e:g}" for e in self.eps_values)
        target = "untargeted" if not self.is_targeted else f"targeted({self.targeted})"
        return f"{self.norm} eps={eps} {target} {self.knowledge}"

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain data, ready for JSON or YAML."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ThreatModel:
        if not isinstance(data, dict):
            raise ConfigError(
                f"a threat model must be a mapping of fields (norm, eps, ...), got "
                f"{type(data).__name__}."
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ThreatModel:
        """Parse JSON text, or read it from a file path."""
        text = _read_maybe_path(text_or_path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"threat model JSON is invalid: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> ThreatModel:
        """Parse YAML text, or read it from a file path."""
        text = _read_maybe_path(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"threat model YAML is invalid: {exc}") from None
        return cls.from_dict(data)


def _read_maybe_path(text_or_path: str | Path) -> str:
    if isinstance(text_or_path, Path):
        if not text_or_path.is_file():
            raise ConfigError(f"no threat model file at {text_or_path}.")
        return text_or_path.read_text()
    candidate = Path(text_or_path)
    if "\n" not in text_or_path and candidate.suffix in (".yaml", ".yml", ".json"):
        if not candidate.is_file():
            raise ConfigError(f"no threat model file at {candidate}.")
        return candidate.read_text()
    return text_or_path


def _explain(exc: ValidationError) -> str:
    """Turn pydantic's report into one line per problem, naming the field."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "threat model"
        msg = err.get("msg", "invalid value")
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field; valid fields are norm, eps, targeted, knowledge, query_budget"
        elif err.get("type") == "missing":
            msg = "required (e.g. eps: 0.3)"
        elif err.get("type") == "literal_error" and field == "knowledge":
            msg = "must be one of white-box, score, decision, transfer"
        lines.append(f"{field}: {msg}")
    # pydantic reports every member of a union; keep each distinct message once
    unique = list(dict.fromkeys(_collapse_union(line) for line in lines))
    return "invalid threat model: " + "; ".join(unique)


def _collapse_union(line: str) -> str:
    field, _, msg = line.partition(": ")
    return f"{field.split('.')[0]}: {msg}"
