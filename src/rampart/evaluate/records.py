"""Per-batch audit records and the checkpoint folder they are saved in.

An audit keeps only small per-sample arrays (labels, predictions, robust flags, norms) and a
few gallery images per batch, so its memory does not grow with the inputs' size. Each
finished batch is written to the checkpoint folder as an ``.npz`` file (never a pickle), so
an interrupted audit resumes without redoing finished batches; a ``key`` ties the folder to
one configuration (model weights, data, threats, suite, seed, batch size) and a folder made
for another configuration is refused instead of silently mixed in.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rampart.errors import ConfigError

POINT_FIELDS = ("robust", "broken_by", "adv_predictions", "adv_confidence", "norms")


@dataclass
class PointRecord:
    """One threat point's per-sample results on one batch, plus its attack statistics."""

    robust: np.ndarray
    broken_by: np.ndarray
    adv_predictions: np.ndarray
    adv_confidence: np.ndarray
    norms: np.ndarray
    stats: list[dict[str, Any]] = field(default_factory=list)
    gallery: list[dict[str, Any]] = field(default_factory=list)  # x, x_adv arrays + labels


@dataclass
class BatchRecord:
    """Everything the report needs from one batch."""

    index: int
    labels: np.ndarray
    clean_predictions: np.ndarray
    points: dict[str, PointRecord]
    extras: dict[str, Any] = field(default_factory=dict)  # JSON: diagnostics, curves (batch 0)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    # ------------------------------------------------------------------ npz round trip
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "index": np.asarray(self.index),
            "labels": self.labels,
            "clean_predictions": self.clean_predictions,
            "extras": np.asarray(json.dumps(self.extras)),
            "points": np.asarray(json.dumps(list(self.points))),
        }
        for p, point in enumerate(self.points.values()):
            for name in POINT_FIELDS:
                arrays[f"p{p}.{name}"] = getattr(point, name)
            arrays[f"p{p}.stats"] = np.asarray(json.dumps(point.stats))
            meta = [{k: v for k, v in g.items() if k not in ("x", "x_adv")} for g in point.gallery]
            arrays[f"p{p}.gallery"] = np.asarray(json.dumps(meta))
            for g, example in enumerate(point.gallery):
                arrays[f"p{p}.g{g}.x"] = example["x"]
                arrays[f"p{p}.g{g}.x_adv"] = example["x_adv"]
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Any) -> BatchRecord:
        keys = json.loads(str(arrays["points"]))
        points = {}
        for p, key in enumerate(keys):
            fields_ = {name: arrays[f"p{p}.{name}"] for name in POINT_FIELDS}
            gallery = json.loads(str(arrays[f"p{p}.gallery"]))
            for g, example in enumerate(gallery):
                example["x"] = arrays[f"p{p}.g{g}.x"]
                example["x_adv"] = arrays[f"p{p}.g{g}.x_adv"]
            points[key] = PointRecord(**fields_, stats=json.loads(str(arrays[f"p{p}.stats"])),
                                      gallery=gallery)
        return cls(index=int(arrays["index"]), labels=arrays["labels"],
                   clean_predictions=arrays["clean_predictions"], points=points,
                   extras=json.loads(str(arrays["extras"])))


class Checkpoint:
    """A folder of finished batch records for one audit configuration."""

    def __init__(self, folder: str | Path, key: dict[str, Any], fresh: bool = False) -> None:
        self.folder = Path(folder)
        self.key = key
        self.folder.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.clear()
        meta = self.folder / "key.json"
        if meta.is_file():
            try:
                saved = json.loads(meta.read_text())
            except (OSError, json.JSONDecodeError):
                saved = None
            if saved != key:
                raise ConfigError(
                    f"the checkpoint folder {self.folder} belongs to a different audit "
                    "(another model, data, threat, suite, seed or batch size); pass --fresh "
                    "to start over, or point --out at another folder."
                )
        else:
            _atomic_write(meta, json.dumps(key, indent=2, sort_keys=True).encode())
        self.resumed = bool(self.finished())

    def _path(self, index: int) -> Path:
        return self.folder / f"batch-{index:06d}.npz"

    def load(self, index: int) -> BatchRecord | None:
        """The saved record of batch ``index``, or None (an unreadable file is redone)."""
        path = self._path(index)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return BatchRecord.from_arrays(arrays)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None

    def save(self, record: BatchRecord) -> None:
        path = self._path(record.index)
        with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".npz", delete=False) as tmp:
            np.savez(tmp, **record.to_arrays())
        os.replace(tmp.name, path)

    def finished(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("batch-*.npz"))

    def clear(self) -> None:
        for path in self.folder.glob("batch-*.npz"):
            path.unlink()
        (self.folder / "key.json").unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
