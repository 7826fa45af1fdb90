"""``TextClassifier``: any callable on a list of strings that returns logits, made safe to attack.

The wrapper checks the texts of every call (clear errors for empty strings, non-strings and
bytes that are not UTF-8), splits calls into batches, converts NumPy / list outputs to a float
tensor of shape ``[n, num_classes]`` and counts every text it sends to the model, so attacks
can report exact query costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rampart.errors import (
    ConfigError,
    ModelOutputError,
    QueryBudgetError,
    RampartError,
    TargetError,
    TextInputError,
)

TextFn = Callable[[list[str]], Any]


def decode_text(item: object, index: int) -> str:
    """``item`` as a ``str``: bytes are decoded as strict UTF-8; anything else is an error."""
    if isinstance(item, bytes | bytearray):
        try:
            return bytes(item).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextInputError(
                f"text {index} is not valid UTF-8: byte 0x{item[exc.start]:02x} at byte offset "
                f"{exc.start} ({exc.reason}); decode it with the right encoding first, e.g. "
                "data.decode('latin-1')"
            ) from None
    if not isinstance(item, str):
        raise TextInputError(
            f"text {index} is a {type(item).__name__}, not a string; pass a list of str "
            "(or UTF-8 bytes)"
        )
    return item


def check_texts(texts: object) -> list[str]:
    """Validate a batch of texts: a non-empty sequence of non-blank strings (or UTF-8 bytes)."""
    if isinstance(texts, str | bytes | bytearray):
        raise TextInputError(
            "expected a list of texts, got a single string; wrap it in a list: [text]"
        )
    if not isinstance(texts, Sequence) and not hasattr(texts, "__iter__"):
        raise TextInputError(f"expected a list of texts, got a {type(texts).__name__}")
    out = [decode_text(item, i) for i, item in enumerate(texts)]  # type: ignore[union-attr]
    if not out:
        raise TextInputError("no texts given: pass a non-empty list of strings")
    for i, text in enumerate(out):
        if not text.strip():
            what = "empty" if not text else "only whitespace"
            raise TextInputError(
                f"text {i} is {what}; remove it or give it some content"
            )
    return out


def check_labels(labels: object, n: int, num_classes: int) -> torch.Tensor:
    """Labels as an int64 tensor of length ``n`` with values in ``[0, num_classes)``."""
    try:
        y = torch.as_tensor(np.asarray(labels)).long().reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TextInputError(f"labels must be integers: {exc}") from None
    if y.numel() != n:
        raise TextInputError(f"got {y.numel()} labels for {n} texts; give one label per text")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise TextInputError(
            f"labels must lie in [0, {num_classes - 1}] for a {num_classes}-class model, got "
            f"values from {int(y.min())} to {int(y.max())}"
        )
    return y


def to_logits(output: Any, n: int, num_classes: int) -> torch.Tensor:
    """Convert a model's output for ``n`` texts to a float32 CPU tensor ``[n, num_classes]``."""
    if isinstance(output, torch.Tensor):
        logits = output.detach().to("cpu", torch.float32)
    else:
        try:
            logits = torch.as_tensor(np.asarray(output, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise ModelOutputError(
                f"the text model returned {type(output).__name__}, which is not an array of "
                f"logits: {exc}"
            ) from None
    if tuple(logits.shape) != (n, num_classes):
        raise ModelOutputError(
            f"the text model returned shape {tuple(logits.shape)} for {n} texts; expected "
            f"({n}, {num_classes}): one row of {num_classes} logits per text"
        )
    if not torch.isfinite(logits).all():
        raise ModelOutputError("the text model returned NaN or infinite logits")
    return logits


class TextClassifier:
    """Any callable on a list of strings that returns logits [n, k], with input checks and
    a query count.

    Args:
        fn: called with a list of at most ``batch_size`` strings; returns logits (a tensor,
            NumPy array or nested list) of shape ``[len(texts), num_classes]``.
        num_classes: the number of classes.
        labels: optional class names, for reports.
        batch_size: the most texts sent to ``fn`` in one call.
        max_queries: optional total budget; a call that would exceed it raises
            ``QueryBudgetError`` before querying.

    ``queries`` counts the texts sent to ``fn`` and ``calls`` the calls to it.
    """

    def __init__(
        self,
        fn: TextFn,
        num_classes: int,
        *,
        labels: list[str] | None = None,
        batch_size: int = 64,
        max_queries: int | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"TextClassifier needs a callable, got {type(fn).__name__}")
        if int(num_classes) < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if labels is not None and len(labels) != int(num_classes):
            raise ConfigError(
                f"got {len(labels)} class labels for {num_classes} classes; give one per class"
            )
        self.fn = fn
        self.num_classes = int(num_classes)
        self.labels = list(labels) if labels is not None else None
        self.batch_size = int(batch_size)
        self.max_queries = max_queries
        self.queries = 0
        self.calls = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, "
            f"batch_size={self.batch_size}, queries={self.queries})"
        )

    def reset_queries(self) -> None:
        """Set the query and call counts back to zero."""
        self.queries = 0
        self.calls = 0

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Logits ``[len(texts), num_classes]`` (float32, CPU); counts ``len(texts)`` queries."""
        checked = check_texts(texts)
        if self.max_queries is not None and self.queries + len(checked) > self.max_queries:
            raise QueryBudgetError(
                f"the text model's query budget of {self.max_queries} is spent "
                f"({self.queries} used, {len(checked)} more asked); raise max_queries"
            )
        chunks = []
        for start in range(0, len(checked), self.batch_size):
            batch = checked[start : start + self.batch_size]
            self.calls += 1
            try:
                output = self.fn(batch)
            except RampartError:
                raise
            except Exception as exc:  # the user's model: any failure is the target's
                raise TargetError(
                    f"the text model failed on a batch of {len(batch)} texts: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            chunks.append(to_logits(output, len(batch), self.num_classes))
            self.queries += len(batch)
        return torch.cat(chunks)

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """Softmax of ``logits(texts)``."""
        return torch.softmax(self.logits(texts), dim=1)

    def predict(self, texts: Sequence[str]) -> torch.Tensor:
        """The predicted class of each text (int64)."""
        return self.logits(texts).argmax(dim=1)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self.logits(texts)
