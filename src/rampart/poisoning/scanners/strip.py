"""STRIP (Gao et al., 2019): triggered inputs stay confident when other images are overlaid.

Overlaying a clean image on a clean input confuses the model: its predictions over several
overlays vary and their entropy is high. A triggered input keeps its trigger through the
overlay, so the model keeps predicting the target class and the entropy stays low. The
threshold comes from a clean reference set the defender trusts: as in the paper, a normal
distribution is fitted to the reference entropies and the threshold is its ``frr`` quantile
(``frr``: the false rejection rate allowed on clean inputs). By default this is done per
predicted class: with additive overlays every blend gains ink and drifts towards classes
like MNIST's 8, whose clean inputs then keep low entropies; one global threshold flags them
by the dozen, a per-class one does not.

STRIP needs no labels and no access to the training run: it can screen inputs at inference
time (``scanner.scan(model, x)``) or a training set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import binom, norm

from rampart.errors import ConfigError, InputError
from rampart.poisoning._data import ArrayLike, as_inputs, as_labels, check_rate
from rampart.poisoning._model import Model, batched_logits, device_of
from rampart.poisoning.scanners.base import Scanner
from rampart.poisoning.scanners.result import ScanResult, summarise_classes

BLENDS = ("add", "average")
CALIBRATIONS = ("class", "global")
SIGNIFICANCE = 1e-3  # binomial p-value (Bonferroni over classes) for calling a class out
ALARM_FACTOR = 10  # ... and its flagged share must exceed this multiple of frr
MIN_REFERENCE = 10  # fewer reference inputs predicted as a class: use the global fit


class STRIP(Scanner):
    """Flag inputs whose predictions stay certain under superimposition with clean images.

    Args:
        reference: clean inputs the defender trusts (a few hundred; NumPy or tensor), both
            the images overlaid and the calibration of the threshold.
        n_overlays: overlays per input; the entropy is averaged over them.
        frr: the share of clean inputs allowed to be flagged (sets the threshold).
        blend: ``"add"`` (the paper: sum, clipped to the bounds) or ``"average"``.
        calibration: ``"class"`` (default): one threshold per predicted class, from the
            reference inputs predicted as that class (the global fit when fewer than 10);
            ``"global"``: one threshold for all.
        bounds: the valid input range.
        batch_size: overlaid inputs per forward pass.
        seed: makes the choice of overlays reproducible.
    """

    name = "strip"

    def __init__(
        self,
        reference: ArrayLike,
        n_overlays: int = 16,
        frr: float = 0.01,
        blend: str = "add",
        calibration: str = "class",
        bounds: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 1024,
        seed: int = 0,
    ) -> None:
        ref, _ = as_inputs(reference, "reference")
        if ref.shape[0] < 2:
            raise InputError("STRIP needs at least 2 clean reference inputs (a few hundred "
                             "are better).")
        if int(n_overlays) < 1:
            raise ConfigError(f"n_overlays must be at least 1, got {n_overlays}.")
        if blend not in BLENDS:
            raise ConfigError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}.")
        if calibration not in CALIBRATIONS:
            raise ConfigError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got "
                              f"{calibration!r}.")
        frr = check_rate(frr, "frr")
        if not 0.0 < frr < 1.0:
            raise ConfigError(f"frr must be strictly between 0 and 1, got {frr}.")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        self.reference = ref.cpu()
        self.n_overlays = int(n_overlays)
        self.frr = frr
        self.blend = blend
        self.calibration = calibration
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def _overlay(self, x: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        if self.blend == "add":
            return (x + others).clamp(*self.bounds)
        return 0.5 * (x + others)

    def _check_shape(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.reference.shape[1:]):
            raise InputError(
                f"inputs are shaped {tuple(x.shape[1:])} per sample but the reference set is "
                f"shaped {tuple(self.reference.shape[1:])}; use reference data like the inputs."
            )

    def entropy(self, model: Model, x: torch.Tensor, exclude_self: bool = False,
                seed_offset: int = 0) -> np.ndarray:
        """Mean prediction entropy (nats) of each input over ``n_overlays`` overlays."""
        self._check_shape(x)
        generator = torch.Generator().manual_seed(self.seed + seed_offset)
        # overlays are blended where the model runs: copying n_overlays blended copies of
        # every input to an accelerator would cost far more than the inputs themselves
        device = device_of(model)
        reference = self.reference.to(device)
        m = reference.shape[0]
        per_chunk = max(1, self.batch_size // self.n_overlays)
        out = []
        for start in range(0, x.shape[0], per_chunk):
            chunk = x[start:start + per_chunk].to(device)
            b = chunk.shape[0]
            if exclude_self:  # a reference input is never overlaid on itself
                rows = torch.arange(start, start + b)[:, None]
                shift = torch.randint(1, m, (b, self.n_overlays), generator=generator)
                picks = (rows + shift) % m
            else:
                picks = torch.randint(0, m, (b, self.n_overlays), generator=generator)
            blended = self._overlay(chunk[:, None], reference[picks.to(device)]).flatten(0, 1)
            logits = batched_logits(model, blended, self.batch_size)
            logp = torch.log_softmax(logits, dim=1)
            h = -(logp.exp() * logp).sum(dim=1).reshape(b, self.n_overlays).mean(dim=1)
            out.append(h)
        return torch.cat(out).numpy().astype(np.float64)

    def calibrate(self, model: Model, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(means, stds) of the clean reference entropy, one pair per class (rows of the
        global fit where a class has too few reference inputs or calibration is global)."""
        entropy = self.entropy(model, self.reference, exclude_self=True, seed_offset=1)
        means = np.full(num_classes, entropy.mean())
        stds = np.full(num_classes, max(float(entropy.std()), 1e-6))
        if self.calibration == "class":
            predicted = batched_logits(model, self.reference, self.batch_size).argmax(1).numpy()
            for k in range(num_classes):
                own = entropy[predicted == k]
                if own.size >= MIN_REFERENCE:
                    means[k], stds[k] = own.mean(), max(float(own.std()), 1e-6)
        return means, stds

    def scan(self, model: Model, x: ArrayLike, y: ArrayLike | None = None) -> ScanResult:
        """Score the inputs ``x``; ``y`` (optional) groups the per-class summary by label,
        otherwise inputs are grouped by the model's prediction.

        A sample's score is how many reference standard deviations its entropy lies below
        the mean clean entropy of its predicted class; it is flagged above the normal
        quantile that lets ``frr`` of clean inputs through.
        """
        xt, _ = as_inputs(x)
        self._check_shape(xt)
        logits = batched_logits(model, xt, self.batch_size)
        k = logits.shape[1]
        predicted = logits.argmax(dim=1).numpy()
        groups = as_labels(y, xt.shape[0]).numpy() if y is not None else predicted
        means, stds = self.calibrate(model, k)
        entropy = self.entropy(model, xt)
        scores = (means[predicted] - entropy) / stds[predicted]
        cut = float(-norm.ppf(self.frr))
        flagged = scores > cut
        n, n_flagged = flagged.size, int(flagged.sum())
        classes = np.unique(groups)
        suspicious, stats = {}, {}
        for c in classes:
            sel = groups == c
            hits, size = int(flagged[sel].sum()), int(sel.sum())
            p = float(binom.sf(hits - 1, size, self.frr)) if hits else 1.0
            suspicious[int(c)] = (p < SIGNIFICANCE / len(classes)
                                  and hits > ALARM_FACTOR * self.frr * size)
            stats[int(c)] = {"p_value": p, "mean_entropy": float(entropy[sel].mean())}
        bad = sorted(c for c, s in suspicious.items() if s)
        expected = self.frr * n
        if bad:
            verdict = (f"likely triggered inputs: {n_flagged} of {n} inputs keep a confident "
                       f"prediction under overlays (about {expected:.0f} expected from clean "
                       f"data), concentrated in class(es) {bad}")
        else:
            verdict = (f"no class with an excess of low-entropy inputs: {n_flagged} flagged, "
                       f"about {expected:.0f} expected from clean data at frr={self.frr:g}")
        settings: dict[str, Any] = {
            "n_overlays": self.n_overlays, "frr": self.frr, "blend": self.blend,
            "calibration": self.calibration, "score_cut": cut,
            "entropy_thresholds": (means - cut * stds).tolist(),
            "reference_size": int(self.reference.shape[0]),
            "grouped_by": "label" if y is not None else "prediction", "seed": self.seed,
        }
        per_class = summarise_classes(groups, scores, flagged, suspicious, stats)
        return ScanResult(self.name, scores, flagged, per_class, bool(bad), verdict, settings,
                          extras={"entropy": entropy})
