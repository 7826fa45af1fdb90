"""Randomized smoothing (Cohen, Rosenfeld and Kolter, 2019): a classifier with a certified
l2 radius.

The smoothed classifier ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)`` answers with the
class the base classifier ``f`` picks most often under Gaussian noise. If that class has
probability at least ``p`` the answer cannot change within the l2 radius
``sigma * Phi^-1(p)``. ``g`` is only known through Monte-Carlo samples, so:

- ``predict`` (Cohen's PREDICT) returns the top class when a binomial test says it beats the
  runner-up at level ``alpha``, else abstains (``-1``);
- ``certify`` (Cohen's CERTIFY) picks the class from ``n0`` samples, bounds its probability
  from below with ``n`` fresh samples (one-sided Clopper-Pearson at ``1 - alpha``) and returns
  the class with radius ``sigma * Phi^-1(p_lower)``, or abstains when the bound is below 1/2.

Each answer is wrong with probability at most ``alpha``. Noisy copies of several inputs
travel through the model together in batches of ``batch_size``; votes are counted on the
device with ``bincount``. By default all inputs share the same seeded noise blocks (each
certificate keeps its guarantee; see ``noise.py``, which also says why the batch size never
changes a result).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from rampart.defenses.bounds import binomial_two_sided_p, certified_radius, clopper_pearson_lower
from rampart.defenses.certified import CertifyResult
from rampart.defenses.noise import DEFAULT_BLOCK, NOISE_MODES, NoiseStream
from rampart.errors import ConfigError, InputError
from rampart.models import ArrayLike, Classifier

ProgressHook = Callable[[int], None]  # called with the number of noisy rows just evaluated


class SmoothedClassifier:
    """A base classifier smoothed with Gaussian noise of standard deviation ``sigma``.

    Args:
        model: the base classifier: a ``rampart.Classifier`` or an ``nn.Module`` (wrapped with
            bounds (0, 1)). It should have been trained with noise of the same ``sigma``
            (``rampart.defenses.fit_noisy``); a model that never saw noise abstains a lot.
        sigma: noise level, in the raw input space (inputs in [0, 1] for images).
        batch_size: noisy copies per forward pass (several inputs share a batch).
        seed: seeds all noise; the same seed gives the same answers on the same device.
        noise_block: noisy copies per seeded block of noise (see ``noise.py``); changing it
            changes the noise, changing ``batch_size`` does not.
        noise: ``shared`` (default): every input gets the same seeded noise blocks, drawn
            once and reused, which makes certification almost as fast as the bare forward
            passes; each input's certificate keeps its guarantee. ``independent``: noise
            seeded per input too, so different inputs' estimates are independent (slower:
            drawing the noise is then a visible share of the cost). See ``noise.py``.
    """

    def __init__(
        self,
        model: Classifier | nn.Module,
        sigma: float,
        batch_size: int = 1_000,
        seed: int = 0,
        noise_block: int = DEFAULT_BLOCK,
        noise: str = "shared",
    ) -> None:
        if isinstance(model, nn.Module):
            model = Classifier(model, bounds=(0.0, 1.0))
        if not isinstance(model, Classifier):
            raise InputError(f"SmoothedClassifier needs a rampart.Classifier or an nn.Module, "
                             f"got {type(model).__name__}.")
        if not (isinstance(sigma, int | float) and np.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"sigma must be a positive number (the noise's standard "
                              f"deviation, e.g. 0.25), got {sigma!r}.")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        if noise_block < 1:
            raise ConfigError(f"noise_block must be at least 1, got {noise_block}.")
        if noise not in NOISE_MODES:
            raise ConfigError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}.")
        self.model = model
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.noise_block = int(noise_block)
        self.noise = noise

    # ------------------------------------------------------------------ Cohen's algorithms
    def predict(self, x: ArrayLike, n: int = 100_000, alpha: float = 0.001,
                offset: int = 0, on_rows: ProgressHook | None = None) -> ArrayLike:
        """PREDICT: the smoothed class of each input, or ``-1`` (abstain) when the top class
        does not beat the runner-up in a two-sided binomial test at level ``alpha``.

        ``offset`` is the index of ``x[0]`` in a larger dataset (it seeds ``independent``
        noise), so predicting a slice gives the answers the whole would. Returns NumPy for
        NumPy input.
        """
        _check_counts(n=n)
        _check_alpha(alpha)
        tensor, was_numpy = self._inputs(x)
        counts = self.counts(tensor, n, phase="predict", offset=offset, on_rows=on_rows)
        top2 = np.argsort(-counts, axis=1, kind="stable")[:, :2]
        rows = np.arange(counts.shape[0])
        n_a, n_b = counts[rows, top2[:, 0]], counts[rows, top2[:, 1]]
        confident = binomial_two_sided_p(n_a, n_b) <= alpha
        out = np.where(confident, top2[:, 0], -1).astype(np.int64)
        return out if was_numpy else torch.from_numpy(out)

    def certify(
        self,
        x: ArrayLike,
        y: ArrayLike | None = None,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        offset: int = 0,
        on_rows: ProgressHook | None = None,
    ) -> CertifyResult:
        """CERTIFY every input: a prediction (or ``-1``) and a certified l2 radius each.

        Args:
            x: inputs in the model's bounds (NumPy or torch).
            y: true labels, optional; they give certified accuracy.
            n0: noisy samples that choose the class.
            n: fresh noisy samples that bound its probability.
            alpha: each certificate is wrong with probability at most ``alpha``.
            offset: index of ``x[0]`` in a larger dataset (it seeds ``independent`` noise).
            on_rows: progress hook, called with the rows of each evaluated batch.
        """
        _check_counts(n0=n0, n=n)
        _check_alpha(alpha)
        tensor, _ = self._inputs(x)
        labels = None
        if y is not None:
            labels = self.model.to_labels(y, tensor.shape[0]).cpu().numpy()
        started = time.perf_counter()
        select = self.counts(tensor, n0, phase="select", offset=offset, on_rows=on_rows)
        guess = select.argmax(axis=1)
        estimate = self.counts(tensor, n, phase="estimate", offset=offset, on_rows=on_rows)
        top = estimate[np.arange(len(guess)), guess]
        p_lower = clopper_pearson_lower(top, n, alpha)
        abstain = p_lower < 0.5
        seconds = time.perf_counter() - started
        return CertifyResult(
            predictions=np.where(abstain, -1, guess).astype(np.int64),
            radii=np.where(abstain, 0.0, certified_radius(p_lower, self.sigma)),
            p_lower=p_lower, top_counts=top.astype(np.int64), labels=labels,
            sigma=self.sigma, n0=int(n0), n=int(n), alpha=float(alpha),
            num_classes=self.model.num_classes,
            settings={"seed": self.seed, "batch_size": self.batch_size,
                      "noise_block": self.noise_block, "noise": self.noise,
                      "offset": int(offset),
                      "device": str(self.model.device)},
            seconds=seconds, forward_passes=int(tensor.shape[0]) * (int(n0) + int(n)),
        )

    # ------------------------------------------------------------------ Monte Carlo
    def counts(self, x: torch.Tensor, copies: int, phase: str = "estimate", offset: int = 0,
               on_rows: ProgressHook | None = None) -> np.ndarray:
        """How often the base model picks each class on ``copies`` noisy copies of every
        input: an ``(N, num_classes)`` array. ``x`` must already be on the model's device."""
        k = self.model.num_classes
        counts = torch.zeros((x.shape[0], k), dtype=torch.long, device=x.device)
        stream = NoiseStream(x, copies, self.sigma, self.seed, phase, self.batch_size,
                             self.noise_block, offset, self.noise)
        flat = counts.view(-1)
        with torch.inference_mode(), self.model.attacking():
            for batch, segments in stream:
                votes = self.model.logits(batch).argmax(dim=1)
                if len(segments) == 1:
                    counts[segments[0].local] += torch.bincount(votes, minlength=k)
                else:  # rows of several inputs (in shared mode not always in input order)
                    lengths = torch.tensor([s.stop - s.start for s in segments],
                                           device=x.device)
                    owners = torch.tensor([s.local for s in segments], device=x.device)
                    owner = torch.repeat_interleave(owners, lengths)
                    flat.index_add_(0, owner * k + votes, torch.ones_like(votes))
                if on_rows is not None:
                    on_rows(batch.shape[0])
        return counts.cpu().numpy()

    def _inputs(self, x: ArrayLike) -> tuple[torch.Tensor, bool]:
        tensor, was_numpy = self.model.to_tensor(x)
        self.model.check_inputs(tensor)
        return tensor, was_numpy


def _check_counts(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name} must be a whole number of noise samples, at least 1; "
                              f"got {value!r}.")


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ConfigError(f"alpha must be strictly between 0 and 1 (the chance a certificate "
                          f"is wrong, e.g. 0.001), got {alpha!r}.")
