"""The model wrapper every attack, metric and defence talks to.

``Classifier`` wraps a PyTorch module so that attacks can treat any model the same way:
inputs live in the raw input space (for images, ``[0, 1]``); normalisation happens inside
the differentiable graph; outputs are always ``(N, num_classes)`` logits on the model's own
device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from torch import nn

from rampart.errors import InputError, ModelOutputError

OutputKind = Literal["logits", "probabilities"]
ArrayLike = torch.Tensor | np.ndarray
_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class Classifier:
    """A classifier over raw inputs, ready to be attacked.

    Args:
        net: the PyTorch module; it receives normalised inputs when ``mean``/``std`` are set.
        bounds: the valid range of raw inputs, e.g. ``(0, 1)`` for images.
        mean, std: per-channel normalisation applied inside the graph (users pass raw inputs).
        num_classes: found by a probe forward pass when not given.
        input_shape: the shape of one sample, e.g. ``(1, 28, 28)``; lets rampart check inputs
            and probe the class count before the first attack.
        output: what ``net`` returns: ``"logits"`` (default) or ``"probabilities"`` (turned into
            log-probabilities, which attacks can use as logits).
        batch_size: the largest chunk sent to the model at once.

    ``differentiable`` is True: white-box attacks may take gradients through ``logits``
    (``rampart.BlackBoxClassifier`` sets it False).
    """

    differentiable = True

    def __init__(
        self,
        net: nn.Module,
        bounds: tuple[float, float] = (0.0, 1.0),
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        num_classes: int | None = None,
        input_shape: Sequence[int] | None = None,
        output: OutputKind = "logits",
        batch_size: int = 256,
    ) -> None:
        if not isinstance(net, nn.Module):
            raise InputError(
                f"Classifier needs a torch.nn.Module, got {type(net).__name__}; "
                "wrap other models with a module or use a black-box target."
            )
        lo, hi = (float(b) for b in bounds)
        if not lo < hi:
            raise InputError(f"bounds must be (low, high) with low < high, got {bounds}.")
        if output not in ("logits", "probabilities"):
            raise InputError(f"output must be 'logits' or 'probabilities', got {output!r}.")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}.")
        if num_classes is not None and num_classes < 2:
            raise InputError(f"num_classes must be at least 2, got {num_classes}.")
        self.net = net
        self.bounds = (lo, hi)
        self.output = output
        self.batch_size = int(batch_size)
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape else None
        self._mean = self._channel_stat(mean, "mean")
        self._std = self._channel_stat(std, "std")
        if self._std is not None and bool((self._std <= 0).any()):
            raise InputError(f"std must be positive, got {std}.")
        self._num_classes = num_classes
        self._single_logit: bool | None = None
        self._outputs_checked = False

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """The device the wrapped module lives on (CPU for a module without tensors)."""
        for tensor in self.net.parameters():
            return tensor.device
        for tensor in self.net.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype inputs are cast to (the module's parameter dtype)."""
        for tensor in self.net.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    @property
    def num_classes(self) -> int:
        """Number of classes; probed with one forward pass when it was not given."""
        if self._num_classes is None:
            if self.input_shape is None:
                raise InputError(
                    "the number of classes is unknown: pass num_classes= or input_shape= to "
                    "Classifier, or run a prediction first."
                )
            probe = torch.full((1, *self.input_shape), self.bounds[0], device=self.device)
            with torch.no_grad(), self.attacking():
                self.logits(probe)
        assert self._num_classes is not None
        return self._num_classes

    # ------------------------------------------------------------------ forward
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits ``(N, num_classes)`` for raw inputs already on the device."""
        z = x
        if self._mean is not None:
            z = z - self._stat_like(self._mean, z)
        if self._std is not None:
            z = z / self._stat_like(self._std, z)
        try:
            out = self.net(z)
        except RuntimeError as exc:
            raise ModelOutputError(
                f"the model failed on a batch shaped {tuple(x.shape)}: {exc}. Check that the "
                "data matches the input the model expects (channels, size, scaling)."
            ) from exc
        return self._to_logits(out, x.shape[0])

    def predict_logits(self, x: ArrayLike) -> ArrayLike:
        """Logits for a batch of any size, in chunks, returned as the same kind as ``x``."""
        tensor, was_numpy = self.to_tensor(x)
        self.check_inputs(tensor)
        with torch.no_grad(), self.attacking():
            out = torch.cat([self.logits(chunk) for chunk in tensor.split(self.batch_size)])
        return out.cpu().numpy() if was_numpy else out

    def predict(self, x: ArrayLike) -> ArrayLike:
        """Predicted labels for a batch of any size, as the same kind as ``x``."""
        logits = self.predict_logits(x)
        if isinstance(logits, np.ndarray):
            return logits.argmax(axis=1)
        return logits.argmax(dim=1)

    # ------------------------------------------------------------------ boundary helpers
    def to_tensor(self, x: ArrayLike) -> tuple[torch.Tensor, bool]:
        """Convert NumPy or torch input to a float tensor on the model's device.

        Returns the tensor and whether the input was NumPy, so results can be handed back
        in the same kind.
        """
        if isinstance(x, np.ndarray):
            if not np.issubdtype(x.dtype, np.number):
                raise InputError(f"inputs must be numeric, got dtype {x.dtype}.")
            return torch.as_tensor(x, device=self.device, dtype=self.dtype), True
        if isinstance(x, torch.Tensor):
            if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int64, torch.int32)):
                raise InputError(f"inputs must be numeric, got dtype {x.dtype}.")
            return x.detach().to(device=self.device, dtype=self.dtype), False
        raise InputError(
            f"inputs must be a NumPy array or a torch tensor, got {type(x).__name__}."
        )

    def to_labels(self, y: ArrayLike | Sequence[int], n: int, what: str = "labels") -> torch.Tensor:
        """Validate integer labels (one per sample, each a known class) and move them over."""
        arr = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
        if arr.is_floating_point():
            if not bool(torch.all(arr == arr.round())):
                raise InputError(f"{what} must be integer class indices, got fractional values.")
        elif arr.dtype not in _INTEGER_DTYPES:
            raise InputError(f"{what} must be integer class indices, got dtype {arr.dtype}.")
        arr = arr.to(device=self.device, dtype=torch.long).reshape(-1)
        if arr.numel() != n:
            raise InputError(f"got {arr.numel()} {what} for {n} inputs; pass one per sample.")
        k = self.num_classes
        bad = (arr < 0) | (arr >= k)
        if bool(bad.any()):
            first = int(arr[bad][0])
            raise InputError(
                f"{what} must be class indices in [0, {k - 1}] for this {k}-class model; "
                f"found {first}."
            )
        return arr

    def check_inputs(self, x: torch.Tensor) -> None:
        """Raise ``InputError`` for empty batches, wrong shapes, NaN/inf or out-of-bounds values.

        The first valid batch also reveals the class count when it was not given.
        """
        if x.ndim < 2 or x.shape[0] == 0:
            raise InputError(
                f"inputs must be a non-empty batch shaped (N, ...), got shape {tuple(x.shape)}."
            )
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"each input must have shape {self.input_shape} (the model's input_shape), "
                f"got batch shape {tuple(x.shape)}."
            )
        if not bool(torch.isfinite(x).all()):
            raise InputError("inputs contain NaN or infinite values; clean or drop those samples.")
        lo, hi = self.bounds
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - 1e-6 or xmax > hi + 1e-6:
            raise InputError(
                f"inputs range over [{xmin:.4g}, {xmax:.4g}] but the model's bounds are "
                f"[{lo:g}, {hi:g}]; scale the data (e.g. divide pixels by 255) or pass "
                "bounds= to Classifier. Normalisation belongs in mean=/std=, not in the data."
            )
        if self._num_classes is None:
            with torch.no_grad(), self.attacking():
                self.logits(x[:1])  # learn the class count from a real sample

    @contextmanager
    def attacking(self) -> Iterator[Classifier]:
        """Eval mode and frozen parameters while attacking; the previous state is restored."""
        was_training = self.net.training
        grads = [(p, p.requires_grad) for p in self.net.parameters()]
        self.net.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for p, flag in grads:
                p.requires_grad_(flag)
            self.net.train(was_training)

    # ------------------------------------------------------------------ internals
    def _channel_stat(
        self, value: Sequence[float] | float | None, name: str
    ) -> torch.Tensor | None:
        if value is None:
            return None
        tensor = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
        if tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
            raise InputError(f"{name} must be finite numbers, got {value}.")
        return tensor

    def _stat_like(self, stat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Shape a per-channel statistic to broadcast over dim 1 of ``z``."""
        if stat.numel() > 1 and (z.ndim < 2 or z.shape[1] != stat.numel()):
            raise InputError(
                f"mean/std have {stat.numel()} channels but inputs have shape "
                f"{tuple(z.shape)}; give one value per channel (dimension 1)."
            )
        shape = [1, stat.numel()] + [1] * (z.ndim - 2)
        return stat.to(device=z.device, dtype=z.dtype).reshape(shape)

    def _to_logits(self, out: torch.Tensor, n: int) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise ModelOutputError(
                f"the model returned {type(out).__name__}, not a tensor of logits; make forward() "
                "return the logits tensor."
            )
        if out.ndim == 1 and out.shape[0] == n:
            out = out.unsqueeze(1)
        if out.ndim != 2 or out.shape[0] != n:
            raise ModelOutputError(
                f"the model returned shape {tuple(out.shape)} for {n} inputs; a classifier must "
                "return (N, num_classes) logits (or (N, 1) for a binary model)."
            )
        if out.shape[1] == 1:
            # One logit z means p(class 1) = sigmoid(z); [0, z] gives the same softmax.
            out = torch.cat([torch.zeros_like(out), out], dim=1)
            self._single_logit = True
        if self._num_classes is None:
            self._num_classes = out.shape[1]
        elif out.shape[1] != self._num_classes:
            raise ModelOutputError(
                f"the model returned {out.shape[1]} outputs per sample but num_classes is "
                f"{self._num_classes}; fix num_classes or the model's last layer."
            )
        if self.output == "probabilities":
            return torch.log(out.clamp_min(1e-12))
        if not self._outputs_checked:
            self._outputs_checked = True
            self._refuse_probabilities(out.detach())
        return out

    def _refuse_probabilities(self, out: torch.Tensor) -> None:
        """Probabilities squash gradients and fool margin losses; demand logits instead."""
        if self._single_logit or out.shape[1] < 2:
            return
        rows = out.sum(dim=1)
        in_unit = bool(((out >= 0) & (out <= 1)).all())
        if in_unit and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-4)):
            raise ModelOutputError(
                "the model's outputs are non-negative and sum to 1 per sample: they look like "
                "probabilities, not logits. Remove the final softmax (attacks need logits), or "
                "pass output='probabilities' (CLI: --output probabilities) to accept them as is."
            )
