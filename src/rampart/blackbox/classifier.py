"""A classifier rampart can only query: a callable, an ONNX or scikit-learn model, an HTTP API.

``BlackBoxClassifier`` is a ``Classifier`` without a network: its ``logits`` send the batch
to a query function and turn the answer into ``(N, K)`` float32 scores. Everything black-box
attacks share lives here: counting queries (samples and calls) in one place, an optional
JSON-lines log of every call, and a hard query budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rampart.blackbox.querylog import QueryLog, input_hash
from rampart.errors import InputError, ModelOutputError, QueryBudgetError, RampartError, TargetError
from rampart.models import Classifier

QueryFn = Callable[[np.ndarray], Any]
Output = Literal["scores", "labels"]
Scores = Literal["probabilities", "logits"]


class BlackBoxClassifier(Classifier):
    """A model reached only through ``query_fn``: no gradients, every sample counted.

    Args:
        query_fn: takes a float32 NumPy batch ``(N, *input_shape)`` and returns ``(N, K)``
            scores or ``(N,)`` labels (NumPy, torch or nested lists). A query function may
            define ``attach_log(log)`` to add its own events to the query log and
            ``close()`` to release connections.
        num_classes: the number of classes ``K`` the target distinguishes.
        input_shape: the shape of one sample, e.g. ``(1, 28, 28)``.
        bounds: the valid range of raw inputs.
        output: ``"scores"`` or ``"labels"``: what the attacker sees. Label-only targets
            serve decision-based attacks; a query function that returns scores is then
            reduced to its argmax.
        scores: whether scores are ``"probabilities"`` (turned into log-probabilities) or
            ``"logits"`` (used as they are).
        batch_size: the most samples passed to ``query_fn`` in one call.
        query_log: a JSON-lines file that gets one line per call.
        max_queries: the most samples this target answers in total; beyond it every call
            raises ``QueryBudgetError``.
        name: how reports name the target.
    """

    differentiable = False

    def __init__(
        self,
        query_fn: QueryFn,
        *,
        num_classes: int,
        input_shape: Sequence[int],
        bounds: tuple[float, float] = (0.0, 1.0),
        output: Output = "scores",
        scores: Scores = "probabilities",
        batch_size: int = 256,
        query_log: str | Path | None = None,
        max_queries: int | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(query_fn):
            raise InputError(
                f"query_fn must be callable (a batch in, scores or labels out), got "
                f"{type(query_fn).__name__}."
            )
        lo, hi = (float(b) for b in bounds)
        if not lo < hi:
            raise InputError(f"bounds must be (low, high) with low < high, got {bounds}.")
        if output not in ("scores", "labels"):
            raise InputError(f"output must be 'scores' or 'labels', got {output!r}.")
        if scores not in ("probabilities", "logits"):
            raise InputError(f"scores must be 'probabilities' or 'logits', got {scores!r}.")
        if int(num_classes) < 2:
            raise InputError(f"num_classes must be at least 2, got {num_classes}.")
        if not input_shape or any(int(s) < 1 for s in input_shape):
            raise InputError(
                f"input_shape must be the shape of one sample, e.g. (1, 28, 28); got {input_shape}."
            )
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}.")
        if max_queries is not None and max_queries < 1:
            raise InputError(f"max_queries must be at least 1, got {max_queries}.")
        self.query_fn = query_fn
        self.net = None
        self.bounds = (lo, hi)
        self.output = output
        self.scores = scores
        self.batch_size = int(batch_size)
        self.input_shape = tuple(int(s) for s in input_shape)
        self._num_classes = int(num_classes)
        self._mean = self._std = None
        self.max_queries = None if max_queries is None else int(max_queries)
        self.name = name or getattr(query_fn, "name", None) or _callable_name(query_fn)
        self.queries = 0
        self.calls = 0
        self.failures = 0
        self.log = QueryLog(query_log) if query_log is not None else None
        if self.log is not None and hasattr(query_fn, "attach_log"):
            query_fn.attach_log(self.log)

    def __repr__(self) -> str:
        return (f"BlackBoxClassifier({self.name!r}, output={self.output!r}, "
                f"num_classes={self._num_classes}, queries={self.queries})")

    # ------------------------------------------------------------------ properties
    @property
    def label_only(self) -> bool:
        """True when the target answers with labels only (decision-based attacks only)."""
        return self.output == "labels"

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def queries_left(self) -> int | None:
        """Samples the budget still allows, or ``None`` without a budget."""
        return None if self.max_queries is None else max(self.max_queries - self.queries, 0)

    # ------------------------------------------------------------------ forward
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, K)`` for raw inputs: log-probabilities, logits, or one-hot labels.

        Never differentiable: the result is a detached float32 CPU tensor. Splits ``x`` into
        calls of at most ``batch_size`` samples, each counted and logged.
        """
        batch = x.detach().to(device="cpu", dtype=torch.float32).numpy()
        parts = [self._query(batch[i:i + self.batch_size])
                 for i in range(0, batch.shape[0], self.batch_size)]
        out = torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0])
        if out.device != x.device:
            out = out.to(x.device)
        return out

    @contextmanager
    def attacking(self) -> Iterator[BlackBoxClassifier]:
        """Nothing to freeze on a remote model; kept for the ``Classifier`` protocol."""
        yield self

    def close(self) -> None:
        """Release the target's connections and close the query log."""
        closer = getattr(self.query_fn, "close", None)
        if callable(closer):
            closer()
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> BlackBoxClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _query(self, batch: np.ndarray) -> np.ndarray:
        """One counted, logged call of ``query_fn``; returns ``(n, K)`` float32 scores."""
        n = int(batch.shape[0])
        if self.max_queries is not None and self.queries + n > self.max_queries:
            raise QueryBudgetError(
                f"the query budget of {self.max_queries} samples for {self.name} is spent "
                f"({self.queries} used, the next call needs {n}); raise max_queries "
                "(CLI: --max-queries) or give the attack a smaller query budget."
            )
        started = time.perf_counter()
        digest = input_hash(batch) if self.log is not None else None
        try:
            raw = self.query_fn(np.ascontiguousarray(batch))
            scores = self._to_scores(raw, n)
        except Exception as exc:
            self.failures += 1
            self._log(n, started, digest, error=str(exc))
            if isinstance(exc, RampartError):
                raise
            raise TargetError(
                f"the target {self.name} failed on a batch of {n}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.queries += n
        self.calls += 1
        self._log(n, started, digest)
        return scores

    def _log(self, n: int, started: float, digest: str | None, error: str | None = None) -> None:
        if self.log is None:
            return
        self.log.write("query", target=self.name, n=n,
                       duration_s=round(time.perf_counter() - started, 6), ok=error is None,
                       error=error, input_sha256=digest, total_queries=self.queries)

    def _to_scores(self, raw: Any, n: int) -> np.ndarray:
        """Check the answer's shape and values and turn it into ``(n, K)`` float32 scores."""
        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().numpy()
        try:
            out = np.asarray(raw)
        except (TypeError, ValueError) as exc:
            raise ModelOutputError(
                f"the target {self.name} returned something that is not an array: {exc}."
            ) from exc
        k = self._num_classes
        if self.label_only:
            return self._one_hot(out, n, k)
        if out.shape == (n,) or out.shape == (n, 1):
            raise ModelOutputError(
                f"the target {self.name} returned one value per input, i.e. labels, not "
                f"({n}, {k}) scores; attack it as label-only: output='labels' (CLI: "
                "--knowledge decision)."
            )
        if out.ndim != 2 or out.shape != (n, k):
            raise ModelOutputError(
                f"the target {self.name} returned shape {out.shape} for {n} inputs; expected "
                f"({n}, {k}) scores. Check num_classes (CLI: --num-classes)."
            )
        if not np.issubdtype(out.dtype, np.number) or not np.isfinite(out).all():
            raise ModelOutputError(
                f"the target {self.name} returned non-numeric, NaN or infinite scores."
            )
        out = out.astype(np.float32)
        if self.scores == "probabilities":
            if out.min() < -1e-6 or out.max() > 1 + 1e-6:
                raise ModelOutputError(
                    f"the target {self.name} returned scores outside [0, 1], so they are not "
                    "probabilities; pass scores='logits' (CLI: --scores logits)."
                )
            return np.log(np.clip(out, 1e-12, None))
        return out

    def _one_hot(self, out: np.ndarray, n: int, k: int) -> np.ndarray:
        """Labels as one-hot rows; scores ``(n, k)`` are reduced to their argmax first, so
        any target can be attacked as label-only."""
        if out.ndim == 2 and out.shape == (n, k) and np.issubdtype(out.dtype, np.number):
            out = out.argmax(axis=1)
        elif out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (n,):
            raise ModelOutputError(
                f"the label-only target {self.name} returned shape {out.shape} for {n} inputs; "
                f"expected ({n},) class indices. Use output='scores' for a target that returns "
                "scores."
            )
        if not np.issubdtype(out.dtype, np.number) or not np.all(out == np.round(out)):
            raise ModelOutputError(
                f"the label-only target {self.name} returned non-integer labels."
            )
        labels = out.astype(np.int64)
        if labels.min() < 0 or labels.max() >= k:
            raise ModelOutputError(
                f"the target {self.name} returned labels outside [0, {k - 1}]; check num_classes."
            )
        one_hot = np.zeros((n, k), dtype=np.float32)
        one_hot[np.arange(n), labels] = 1.0
        return one_hot


def _callable_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else type(fn).__name__
