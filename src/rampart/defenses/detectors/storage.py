"""Detector files: one safetensors file, tensors plus JSON metadata, never a pickle.

The metadata holds ``format`` (``rampart-detector``), ``version``, the detector's ``kind``
and its ``state`` (settings, threshold, fpr, input shape) as a JSON string; the tensors are
the fitted parameters (class centres, a whitening matrix, a small network's weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rampart.errors import ConfigError, ModelLoadError

FORMAT = "rampart-detector"
VERSION = 1


def write_detector(path: str | Path, kind: str, state: dict[str, Any],
                   tensors: dict[str, torch.Tensor]) -> Path:
    """Write a detector's state and tensors to ``path`` (folders are created)."""
    from safetensors.torch import save_file

    target = Path(path).expanduser()
    metadata = {"format": FORMAT, "version": str(VERSION), "kind": kind,
                "state": json.dumps(state)}
    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(plain, str(target), metadata=metadata)
    except OSError as exc:
        raise ConfigError(f"could not write the detector to {str(target)!r} ({exc}); check that "
                          "the folder is writable.") from None
    return target


def read_detector(path: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(kind, state, tensors) of a file written by ``write_detector``."""
    from safetensors import safe_open

    source = Path(path).expanduser()
    if not source.is_file():
        raise ModelLoadError(f"no detector file at {str(source)!r}; save one with "
                             "detector.save(path).")
    try:
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # SafetensorError, OSError, ...
        raise ModelLoadError(f"could not read {str(source)!r} as a safetensors detector file "
                             f"({exc}); it may be damaged or another kind of file.") from None
    if metadata.get("format") != FORMAT:
        raise ModelLoadError(f"{str(source)!r} is a safetensors file but not a rampart detector "
                             "(its metadata has no format=rampart-detector).")
    if metadata.get("version") != str(VERSION):
        raise ModelLoadError(f"{str(source)!r} is a version {metadata.get('version')} detector "
                             f"file; this rampart reads version {VERSION}. Fit and save it again.")
    try:
        state = json.loads(metadata["state"])
        kind = metadata["kind"]
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{str(source)!r} has damaged detector metadata ({exc}); fit and "
                             "save it again.") from None
    return kind, state, tensors
