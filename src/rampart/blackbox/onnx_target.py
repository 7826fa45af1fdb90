"""ONNX models as black-box targets, run with onnxruntime on the CPU.

The model's first input takes the float32 batch; the output named ``output`` (the first by
default) gives ``(N, K)`` scores or ``(N,)`` labels. The input shape and class count are read
from the model when its dimensions are fixed, so most models need no extra options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rampart.blackbox.classifier import BlackBoxClassifier
from rampart.errors import ConfigError, ModelLoadError


class OnnxQuery:
    """The query function of an onnxruntime session."""

    def __init__(self, path: str | Path, output: str | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ConfigError(
                "ONNX targets need onnxruntime; install it with pip install 'rampart[onnx]'."
            ) from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"no ONNX model at {self.path}; check the path.")
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        self.input = self.session.get_inputs()[0]
        outputs = [o.name for o in self.session.get_outputs()]
        if output is not None and output not in outputs:
            raise ConfigError(
                f"{self.path.name} has no output {output!r}; its outputs are {', '.join(outputs)}."
            )
        self.output = output or outputs[0]
        self.output_shape = next(o.shape for o in self.session.get_outputs()
                                 if o.name == self.output)
        self.name = self.path.name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input.name: batch})[0]

    def fixed_input_shape(self) -> tuple[int, ...] | None:
        """The shape of one sample when the model fixes every non-batch dimension."""
        dims = self.input.shape[1:]
        return tuple(dims) if dims and all(isinstance(d, int) and d > 0 for d in dims) else None

    def fixed_classes(self) -> int | None:
        """The class count when the output is ``(N, K)`` with a fixed ``K``."""
        shape = self.output_shape
        if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 1:
            return shape[1]
        return None


def from_onnx(
    path: str | Path,
    *,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    output: Literal["scores", "labels"] = "scores",
    scores: Literal["probabilities", "logits"] = "logits",
    output_name: str | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    query_log: str | Path | None = None,
    max_queries: int | None = None,
) -> BlackBoxClassifier:
    """Wrap the ONNX model at ``path``; shapes not given are read from the model."""
    query = OnnxQuery(path, output_name)
    input_shape = input_shape or query.fixed_input_shape()
    if input_shape is None:
        raise ConfigError(
            f"{query.name} does not fix its input shape ({query.input.shape}); pass "
            "input_shape= (CLI: --input-shape 1,28,28)."
        )
    num_classes = num_classes or query.fixed_classes()
    if num_classes is None:
        raise ConfigError(
            f"cannot tell how many classes {query.name} has; pass num_classes= "
            "(CLI: --num-classes)."
        )
    return BlackBoxClassifier(
        query, num_classes=num_classes, input_shape=input_shape, bounds=bounds, output=output,
        scores=scores, batch_size=batch_size, query_log=query_log, max_queries=max_queries,
    )
