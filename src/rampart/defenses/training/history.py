"""What a training run measured, epoch by epoch, as data that goes to JSON and the report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rampart.evaluate.atomic import write_text_atomic

SCHEMA = "rampart.train"
SCHEMA_VERSION = 1
STOP_REASONS = ("completed", "early-stopping", "catastrophic-overfitting")


@dataclass
class EpochRecord:
    """One epoch. Accuracies are fractions; validation values are None without validation
    data; ``fgsm_accuracy`` is measured only when the catastrophic-overfitting check runs."""

    epoch: int  # 1-based
    eps: float
    lr: float
    train_loss: float
    train_accuracy: float
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    fgsm_accuracy: float | None = None
    seconds: float = 0.0  # the whole epoch: training plus validation
    validation_seconds: float = 0.0
    best: bool = False
    rolled_back: bool = False
    overfit_suspect: bool = False  # the overfitting check flagged it (see OverfitCheck)
    note: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class TrainingHistory:
    """Every epoch of a run and how it ended.

    ``final_epoch`` is the epoch whose weights the trainer returned: the best one by robust
    validation accuracy when the best weights were restored, else the last one.
    """

    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    final_epoch: int | None = None
    stop_reason: str = "completed"
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    world_size: int = 1
    resumed_from: int | None = None  # epochs already done when this run resumed

    def series(self, name: str) -> list[Any]:
        """One field over the epochs, e.g. ``history.series("robust_accuracy")``."""
        return [getattr(r, name) for r in self.epochs]

    @property
    def last(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def final(self) -> EpochRecord | None:
        """The record of the epoch whose weights were returned."""
        return next((r for r in self.epochs if r.epoch == self.final_epoch), self.last)

    def to_dict(self) -> dict[str, Any]:
        final = self.final
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "stop_reason": self.stop_reason, "best_epoch": self.best_epoch,
            "final_epoch": self.final_epoch, "world_size": self.world_size,
            "resumed_from": self.resumed_from,
            "final": None if final is None else asdict(final),
            "epochs": [asdict(r) for r in self.epochs],
            "settings": self.settings, "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingHistory:
        return cls(
            epochs=[EpochRecord.from_dict(r) for r in data.get("epochs", [])],
            best_epoch=data.get("best_epoch"), final_epoch=data.get("final_epoch"),
            stop_reason=data.get("stop_reason", "completed"),
            settings=dict(data.get("settings", {})), notes=list(data.get("notes", [])),
            world_size=int(data.get("world_size", 1)), resumed_from=data.get("resumed_from"),
        )

    def save_json(self, path: str | Path) -> Path:
        """Write the history as JSON (atomically: a reader never sees half a file)."""
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
