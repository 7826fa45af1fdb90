"""Turning a request body into a validated input batch, or a clear 4xx.

Two encodings: JSON ``{"inputs": [[...], ...]}`` and a NumPy ``.npy`` file
(``Content-Type: application/x-npy``), read with ``numpy.load(allow_pickle=False)`` only, so
an object array is refused instead of unpickled. Every check a client can fail raises
``RequestError`` with the HTTP status and a message that says what to fix; none of them
echoes the client's data back or says anything about the model beyond its input contract.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import torch

from rampart.errors import InputError
from rampart.serve.config import GuardConfig

NPY_TYPES = ("application/x-npy", "application/octet-stream")
_NPY_MAGIC = b"\x93NUMPY"


class RequestError(InputError):
    """A request the service refuses; ``status`` is the HTTP status, ``reason`` the metric
    label (``malformed``, ``too large``, ``invalid input``)."""

    def __init__(self, status: int, message: str, reason: str = "invalid input") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def parse_batch(body: bytes, content_type: str | None, config: GuardConfig) -> torch.Tensor:
    """The inputs in ``body`` as a float tensor ``(N, *input_shape)``, checked against the
    config's shape, bounds and batch limit (the body's size, ``max_request_bytes``, is
    refused while it is read: ``rampart.serve.app.read_body``)."""
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    dtype = np.float64 if config.model.dtype == "float64" else np.float32
    if kind in NPY_TYPES:
        array = _from_npy(body, dtype)
    elif kind == "application/json" or kind.endswith("+json"):
        array = _from_json(body, dtype)
    else:
        raise RequestError(415, f"unsupported Content-Type {kind!r}; send application/json "
                           "({\"inputs\": [...]}) or application/x-npy (a .npy file).",
                           "malformed")
    return check_batch(array, config)


def check_batch(array: np.ndarray, config: GuardConfig) -> torch.Tensor:
    """Shape, size, finiteness and bounds of a batch; the tensor in the model's dtype."""
    shape = tuple(config.model.input_shape)
    size = math.prod(shape)
    if array.ndim == len(shape) or (array.ndim == 1 and array.size == size):
        array = array.reshape(1, *shape) if array.ndim == 1 else array[None]  # one input
    if array.ndim == 2 and len(shape) > 1 and array.shape[1] == size:
        array = array.reshape(array.shape[0], *shape)  # flat rows are fine
    if array.ndim == 0 or array.shape[0] == 0:
        raise RequestError(422, "the batch is empty; send at least one input.")
    n = array.shape[0]
    if n > config.limits.max_batch:
        raise RequestError(413, f"the batch has {n} inputs; the limit is "
                           f"{config.limits.max_batch} per request. Split it.", "too large")
    if tuple(array.shape[1:]) != shape:
        raise RequestError(422, f"each input must have shape {list(shape)} (or be a flat row of "
                           f"{size} numbers); got a batch shaped {list(array.shape)}.")
    if not np.isfinite(array).all():
        raise RequestError(422, "the inputs contain NaN, infinite or out-of-range values; "
                           "send finite numbers within the model's bounds.")
    lo, hi = config.model.bounds
    low, high = float(array.min()), float(array.max())
    if low < lo - 1e-6 or high > hi + 1e-6:
        raise RequestError(422, f"input values must lie in [{lo:g}, {hi:g}]; got values from "
                           f"{low:.4g} to {high:.4g}. Scale the inputs as the model expects.")
    dtype = torch.float64 if config.model.dtype == "float64" else torch.float32
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)  # a no-op when parsed so


def _from_json(body: bytes, dtype: type[np.floating]) -> np.ndarray:
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise RequestError(400, "the body is not valid JSON; send {\"inputs\": [[...], ...]}.",
                           "malformed") from None
    if not isinstance(data, dict) or "inputs" not in data:
        raise RequestError(400, "the JSON body must be an object with an \"inputs\" list: "
                           "{\"inputs\": [[...], ...]}.", "malformed")
    try:
        with np.errstate(over="ignore"):  # numbers beyond the dtype become inf: refused below
            array = np.asarray(data["inputs"], dtype=dtype)  # in the model's dtype at once
    except (TypeError, ValueError, OverflowError):
        raise RequestError(400, "\"inputs\" must be a rectangular list of numbers (every input "
                           "the same shape, no strings or nulls).", "malformed") from None
    return array


def _from_npy(body: bytes, dtype: type[np.floating]) -> np.ndarray:
    if not body.startswith(_NPY_MAGIC):
        raise RequestError(400, "the body is not a .npy file (it must start with the NumPy "
                           "magic bytes); write it with numpy.save.", "malformed")
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused, not loaded
        message = ("object arrays are not accepted; send a numeric array."
                   if "pickle" in str(exc).lower() else "the .npy file could not be read.")
        raise RequestError(400, message, "malformed") from None
    except (OSError, EOFError):
        raise RequestError(400, "the .npy file is truncated or damaged.", "malformed") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        kind = getattr(array, "dtype", type(array).__name__)
        raise RequestError(422, f"the .npy array must hold real numbers (float or integer), "
                           f"got {kind}.")
    with np.errstate(over="ignore"):
        return array.astype(dtype, copy=False)
