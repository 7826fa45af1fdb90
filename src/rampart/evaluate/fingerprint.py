"""Short, stable fingerprints of model weights and datasets, so the history can tell when two
audits ran on the same model and data.

A fingerprint is the first hex digits of a SHA-256 over names, dtypes, shapes and raw bytes.
It does not depend on where the tensors live (CPU or GPU), on the order of a state_dict, on
whether data came as NumPy arrays or tensors, or on the batch size it was streamed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rampart.errors import InputError
from rampart.loading import WRAPPER_PREFIXES
from rampart.models import Classifier

__all__ = ["DEFAULT_LENGTH", "DataFingerprint", "data_fingerprint", "weights_fingerprint"]

DEFAULT_LENGTH = 16  # hex digits: 64 bits, plenty to tell runs apart, short enough to read


def weights_fingerprint(
    weights: nn.Module | Classifier | Mapping[str, Any], length: int = DEFAULT_LENGTH
) -> str:
    """Fingerprint of a model's state_dict (names, dtypes, shapes and values).

    Takes an ``nn.Module``, a :class:`~rampart.Classifier` or a state_dict. Entry order and
    device do not matter, nor does a ``module.`` / ``_orig_mod.`` prefix that DataParallel,
    DDP or ``torch.compile`` put on every key, so a wrapped model hashes like the bare one.
    """
    _check_length(length)
    if isinstance(weights, Classifier):
        weights = weights.net
    if isinstance(weights, nn.Module):
        weights = weights.state_dict()
    if not isinstance(weights, Mapping):
        raise InputError(
            f"weights_fingerprint takes an nn.Module, a rampart.Classifier or a state_dict, "
            f"got {type(weights).__name__}."
        )
    state = _strip_prefixes({str(k): v for k, v in weights.items()})
    digest = hashlib.sha256(b"rampart-weights-v1")
    for name in sorted(state):
        value = state[name]
        if isinstance(value, torch.Tensor | np.ndarray):
            dtype, shape, data = _tensor_bytes(value, f"state_dict entry {name!r}")
            header = {"name": name, "dtype": dtype, "shape": shape, "nbytes": data.nbytes}
            digest.update(json.dumps(header, sort_keys=True).encode())
            digest.update(data)
        else:  # extra state (numbers, strings, ...): hashed by value when it is plain data
            header = {"name": name, "value": _plain(value)}
            digest.update(json.dumps(header, sort_keys=True).encode())
    return digest.hexdigest()[:length]


class DataFingerprint:
    """Fingerprint of a dataset, fed batch by batch so data of any size can be hashed.

    ``update(x, y)`` takes one batch (NumPy arrays or tensors on any device); rows must come
    in the same order each time, but how they are split into batches does not change the
    result. ``hexdigest()`` can be called at any point and covers everything fed so far.
    """

    def __init__(self) -> None:
        self._x = hashlib.sha256()
        self._y = hashlib.sha256()
        self._x_meta: tuple[str, list[int]] | None = None
        self._y_meta: tuple[str, list[int]] | None = None
        self._has_y: bool | None = None
        self.rows = 0

    def update(self, x: Any, y: Any = None) -> DataFingerprint:
        """Add one batch: inputs ``x`` (first axis = samples) and optional labels ``y``."""
        x_dtype, x_shape, x_bytes = _tensor_bytes(x, "x")
        if not x_shape:
            raise InputError("x must have a first axis of samples; got a scalar.")
        has_y = y is not None
        if self._has_y is not None and has_y != self._has_y:
            raise InputError("give labels y with every batch or with none, not only some.")
        y_meta = None
        if has_y:
            y_dtype, y_shape, y_bytes = _tensor_bytes(y, "y")
            if not y_shape or y_shape[0] != x_shape[0]:
                raise InputError(
                    f"y must have one row per sample of x ({x_shape[0]}), got shape "
                    f"{tuple(y_shape)}."
                )
            y_meta = (y_dtype, y_shape[1:])
        x_meta = (x_dtype, x_shape[1:])
        if self._x_meta is not None and (x_meta != self._x_meta or y_meta != self._y_meta):
            raise InputError(
                f"every batch must have the same dtype and sample shape; got x {x_meta} "
                f"(y {y_meta}) after x {self._x_meta} (y {self._y_meta})."
            )
        self._x_meta, self._y_meta, self._has_y = x_meta, y_meta, has_y
        self._x.update(x_bytes)
        if has_y:
            self._y.update(y_bytes)
        self.rows += x_shape[0]
        return self

    def hexdigest(self, length: int = DEFAULT_LENGTH) -> str:
        """The fingerprint of all rows fed so far (the empty dataset has one too)."""
        _check_length(length)
        header = {"rows": self.rows, "x": self._x_meta, "y": self._y_meta}
        digest = hashlib.sha256(b"rampart-data-v1")
        digest.update(json.dumps(header, sort_keys=True).encode())
        digest.update(self._x.digest())
        digest.update(self._y.digest())
        return digest.hexdigest()[:length]


def data_fingerprint(x: Any, y: Any = None, batch_size: int = 4096,
                     length: int = DEFAULT_LENGTH) -> str:
    """Fingerprint of whole arrays ``x`` (and labels ``y``), hashed ``batch_size`` rows at a
    time so a memory-mapped array is never copied whole."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    fp = DataFingerprint()
    n = len(x)
    if n == 0:
        fp.update(x, y)
    for start in range(0, n, batch_size):
        stop = start + batch_size
        fp.update(x[start:stop], None if y is None else y[start:stop])
    return fp.hexdigest(length)


# ---------------------------------------------------------------------- helpers


def _tensor_bytes(value: Any, what: str) -> tuple[str, list[int], np.ndarray]:
    """``(dtype name, shape, flat uint8 view)`` of a tensor or array, on the CPU."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.is_sparse:
            tensor = tensor.to_dense()
        if tensor.is_quantized:
            tensor = tensor.int_repr()
        tensor = tensor.resolve_conj().resolve_neg().cpu().contiguous()
        dtype = str(tensor.dtype).removeprefix("torch.")
        shape = list(tensor.shape)
        flat = tensor.reshape(-1).view(torch.uint8)
        return dtype, shape, flat.numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{what} is not an array or tensor ({exc}).") from None
    if array.dtype.hasobject:
        raise InputError(
            f"{what} holds Python objects (dtype {array.dtype}); give a numeric array or tensor."
        )
    if array.dtype.byteorder == ">":  # big-endian data hashes like the same values native
        array = array.astype(array.dtype.newbyteorder("<"))
    shape = list(array.shape)  # before making it contiguous, which turns 0-d into 1-d
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return array.dtype.name, shape, flat


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _plain(value: Any) -> Any:
    """``value`` if it is plain JSON data, else just its type name (hashed by kind only)."""
    try:
        json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return f"<{type(value).__module__}.{type(value).__qualname__}>"
    return value


def _check_length(length: int) -> None:
    if not 1 <= length <= 64:
        raise InputError(f"a fingerprint has 1 to 64 hex digits; got length={length}.")
