"""The training configuration file (``rampart train --config train.yaml``).

One YAML (or JSON) file says which model to train (and from which initial weights), on
which data, against which threat, with which method and hyperparameters, and where the
outputs go. Flags on the command line override the file. Unknown keys are errors, so a typo
never silently drops a setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rampart.config_files import read_config_file, validate
from rampart.defenses.training.methods import METHODS
from rampart.threat import ThreatModel

EXAMPLE = """\
model: rampart.zoo:digits_cnn        # file.py:factory, package.module:factory
weights: null                        # optional initial weights (safetensors / state_dict)
data: digits                         # digits, mnist:DIR, cifar10:DIR, npz:FILE, folder:DIR
split: train                         # mnist / cifar10 split
validation: {last: 300}              # hold out the last 300 samples (or {data: npz:val.npz})
threat: {norm: linf, eps: 0.1}
method: pgd                          # pgd, fast-fgsm, n-fgsm, trades or clean
epochs: 10
batch_size: 128
lr: 0.001
attack: {steps: 10}                  # PGD / TRADES inner steps
curriculum: {ramp_epochs: 3}         # eps grows linearly over the first 3 epochs
early_stopping: {patience: 3}
outputs: {dir: reports/train}
"""


class Validation(BaseModel):
    """Where the validation data comes from and how robust accuracy is measured on it."""

    model_config = ConfigDict(extra="forbid")

    last: int | None = Field(None, ge=1)
    data: str | None = None
    split: str = "test"
    limit: int | None = Field(None, ge=1)
    samples: int = Field(500, ge=1)
    pgd_steps: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> Validation:
        if self.last is not None and self.data is not None:
            raise ValueError("give either last (hold out the last N training samples) or data "
                             "(a separate dataset), not both")
        return self


class AttackSettings(BaseModel):
    """The inner maximisation of PGD / TRADES / fast FGSM."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(10, ge=1)
    rel_step_size: float | None = Field(None, gt=0)
    fgsm_step: float = Field(1.25, gt=0)


class Curriculum(BaseModel):
    """The eps schedule: a linear ramp, or explicit values per epoch."""

    model_config = ConfigDict(extra="forbid")

    ramp_epochs: int = Field(0, ge=0)
    start: float = Field(0.0, ge=0)
    values: list[float] | None = None


class EarlyStopping(BaseModel):
    """Stop when robust validation accuracy stops improving; keep the best epoch."""

    model_config = ConfigDict(extra="forbid")

    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = True


class OverfitSettings(BaseModel):
    """The catastrophic-overfitting check (see ``OverfitCheck``)."""

    model_config = ConfigDict(extra="forbid")

    check: bool | None = None
    drop: float = Field(0.2, gt=0, le=1)
    gap: float = Field(0.5, gt=0, le=1)
    patience: int = Field(2, ge=1)


class TrainOutputs(BaseModel):
    """Where the weights, metrics, report and checkpoints go."""

    model_config = ConfigDict(extra="forbid")

    dir: Path = Path("reports/train")
    weights: str = "model.safetensors"
    html: bool = True


class TrainConfig(BaseModel):
    """Everything one training run needs."""

    model_config = ConfigDict(extra="forbid")

    model: str
    weights: Path | None = None
    name: str | None = None
    data: str = "digits"
    split: str = "train"
    limit: int | None = Field(None, ge=1)
    validation: Validation | None = None
    bounds: tuple[float, float] = (0.0, 1.0)
    mean: list[float] | None = None
    std: list[float] | None = None
    threat: ThreatModel
    method: str = "pgd"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["cosine", "step", "constant", "one-cycle"] = "cosine"
    grad_clip: float | None = Field(None, gt=0)
    attack: AttackSettings = Field(default_factory=AttackSettings)
    trades_beta: float = Field(6.0, ge=0)
    adv_fraction: float = Field(1.0, ge=0, le=1)
    curriculum: Curriculum = Field(default_factory=Curriculum)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    overfitting: OverfitSettings = Field(default_factory=OverfitSettings)
    seed: int = 0
    device: str = "auto"
    outputs: TrainOutputs = Field(default_factory=TrainOutputs)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        key = value.lower().replace("_", "-")
        if key not in METHODS:
            raise ValueError(f"unknown method {value!r}; choose one of {', '.join(METHODS)}")
        return key

    @field_validator("threat", mode="before")
    @classmethod
    def _one_eps(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("eps"), list):
            if len(value["eps"]) != 1:
                raise ValueError("training uses one eps; give threat.eps as a single number")
            value = {**value, "eps": value["eps"][0]}
        return value

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None
                  ) -> TrainConfig:
        """Read a YAML/JSON file, apply ``overrides`` (flags), validate."""
        data = read_config_file(path, "training", EXAMPLE)
        merged = dict(data)
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return cls.build(merged, where=str(path))

    @classmethod
    def build(cls, data: dict[str, Any], where: str = "the training settings") -> TrainConfig:
        """Validate ``data``; every problem is listed in one ``ConfigError``."""
        return validate(cls, data, where)
