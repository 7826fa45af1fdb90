"""Output-side defences against model stealing: what an API answers instead of its full
probability vector.

Each defence is a pure function on a batch of probability rows ``(N, K)`` (a tensor; rows
sum to 1) and returns the rows the API would send back. They are usable on their own (a
guard service applies them to each response) and through :class:`OutputDefence`, which
parses the short specs the CLI takes (``rounding:2``, ``topk:1``, ``labels``, ``noise:0.1``)
and which :func:`rampart.extraction.defend` puts in front of a victim.

What each one keeps and changes:

* ``rounding:D`` rounds every probability to ``D`` decimals (rows no longer sum to exactly
  1). The top class keeps the largest value, but coarse rounding can tie it with others.
* ``topk:K`` keeps the ``K`` largest probabilities as they are and zeroes the rest, without
  renormalising: the API still tells the truth about the classes it shows, and the thief
  learns nothing about the others. The argmax is kept.
* ``labels`` answers with a one-hot row at the top class (label-only). The argmax is kept.
* ``noise:S`` adds Gaussian noise of standard deviation ``S`` to every probability, clips
  at 0 and renormalises; when the noise displaced the top class, its value is swapped with
  the new top one, so the predicted label never changes while the scores a thief trains on
  are perturbed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rampart.errors import ConfigError, InputError

__all__ = ["DEFENCE_SPECS", "OutputDefence", "labels_only", "noisy_probabilities",
           "round_probabilities", "top_k"]

DEFENCE_SPECS = ("none", "rounding:DECIMALS", "topk:K", "labels", "noise:STD")


def _rows(p: torch.Tensor) -> torch.Tensor:
    if not isinstance(p, torch.Tensor) or p.ndim != 2 or p.shape[1] < 2:
        shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
        raise InputError(f"output defences take a (N, K) tensor of probabilities with K >= 2, "
                         f"got {shape}.")
    if not p.is_floating_point():
        raise InputError(f"probabilities must be floating point, got dtype {p.dtype}.")
    return p


def round_probabilities(p: torch.Tensor, decimals: int) -> torch.Tensor:
    """Every probability rounded to ``decimals`` decimal places (at least 1)."""
    if int(decimals) != decimals or decimals < 1:
        raise ConfigError(f"rounding needs at least 1 decimal, got {decimals}.")
    return torch.round(_rows(p), decimals=int(decimals))


def top_k(p: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` largest probabilities of each row kept as they are, the others set to 0."""
    p = _rows(p)
    if int(k) != k or not 1 <= k <= p.shape[1]:
        raise ConfigError(f"top-k needs k between 1 and the number of classes ({p.shape[1]}), "
                          f"got {k}.")
    kept = torch.zeros_like(p)
    values, index = p.topk(int(k), dim=1)
    return kept.scatter_(1, index, values)


def labels_only(p: torch.Tensor) -> torch.Tensor:
    """A one-hot row at each row's top class: the answer of a label-only API."""
    p = _rows(p)
    return torch.zeros_like(p).scatter_(1, p.argmax(dim=1, keepdim=True), 1.0)


def noisy_probabilities(p: torch.Tensor, std: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Probabilities plus Gaussian noise (clipped at 0, renormalised) that keep each row's
    top class: where noise moved the maximum elsewhere, the two values are swapped back."""
    p = _rows(p)
    if not std >= 0:
        raise ConfigError(f"the noise's standard deviation must be 0 or more, got {std}.")
    noise = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
    q = (p + float(std) * noise).clamp_min(0.0)
    total = q.sum(dim=1, keepdim=True)
    q = torch.where(total > 0, q / total.clamp_min(1e-12), p)
    top, new_top = p.argmax(dim=1, keepdim=True), q.argmax(dim=1, keepdim=True)
    top_value, new_value = q.gather(1, top), q.gather(1, new_top)
    return q.scatter(1, new_top, top_value).scatter(1, top, new_value)


@dataclass(frozen=True)
class OutputDefence:
    """One output defence with its parameter, e.g. ``OutputDefence.parse("rounding:2")``.

    ``defence(p, generator)`` applies it to probability rows (the generator only matters for
    ``noise``); ``str(defence)`` is the spec again.
    """

    kind: str = "none"  # none | rounding | topk | labels | noise
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"unknown output defence {self.kind!r}; use one of "
                              f"{', '.join(DEFENCE_SPECS)}.")
        needs = _KINDS[self.kind]
        if needs is None and self.value is not None:
            raise ConfigError(f"the {self.kind!r} defence takes no parameter; write it as "
                              f"{self.kind}.")
        if needs is not None and self.value is None:
            raise ConfigError(f"the {self.kind!r} defence needs a parameter; write it as "
                              f"{self.kind}:{needs}.")
        if self.kind in ("rounding", "topk") and (self.value != int(self.value) or self.value < 1):
            raise ConfigError(f"{self.kind} needs a whole number of at least 1, got "
                              f"{self.value:g}.")
        if self.kind == "noise" and not self.value >= 0:
            raise ConfigError(f"noise needs a standard deviation of 0 or more, got {self.value}.")

    @classmethod
    def parse(cls, spec: str | OutputDefence | None) -> OutputDefence:
        """``none``, ``rounding:D``, ``topk:K``, ``labels`` or ``noise:STD`` as a defence."""
        if isinstance(spec, OutputDefence):
            return spec
        if spec is None:
            return cls()
        kind, sep, arg = str(spec).strip().lower().partition(":")
        kind = {"round": "rounding", "top-k": "topk", "label": "labels",
                "label-only": "labels", "": "none"}.get(kind, kind)
        if kind not in _KINDS:
            raise ConfigError(f"unknown output defence {spec!r}; use one of "
                              f"{', '.join(DEFENCE_SPECS)} (e.g. rounding:2).")
        value = None
        if sep:
            try:
                value = float(arg)
            except ValueError:
                raise ConfigError(f"the parameter of {spec!r} must be a number, e.g. "
                                  f"{kind}:{_EXAMPLES.get(kind, 1)}.") from None
        return cls(kind, value)

    @property
    def label_only(self) -> bool:
        """True when the defended API answers with labels only."""
        return self.kind == "labels"

    @property
    def keeps_argmax(self) -> bool:
        """True when the answer's top class is always the model's (rounding can tie it)."""
        return self.kind != "rounding"

    def __call__(self, p: Any, generator: torch.Generator | None = None) -> Any:
        """The defended answers for probability rows ``p`` (a tensor, or a NumPy array
        answered as one)."""
        if isinstance(p, np.ndarray):
            return self._apply(torch.from_numpy(p), generator).numpy()
        return self._apply(p, generator)

    def _apply(self, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.kind == "none":
            return _rows(p)
        if self.kind == "rounding":
            return round_probabilities(p, int(self.value or 0))
        if self.kind == "topk":
            return top_k(p, int(self.value or 0))
        if self.kind == "labels":
            return labels_only(p)
        return noisy_probabilities(p, float(self.value or 0.0), generator)

    def __str__(self) -> str:
        if self.value is None:
            return self.kind
        whole = self.kind in ("rounding", "topk")
        return f"{self.kind}:{int(self.value) if whole else self.value:g}"


_KINDS: dict[str, str | None] = {"none": None, "rounding": "DECIMALS", "topk": "K",
                                 "labels": None, "noise": "STD"}
_EXAMPLES = {"rounding": 2, "topk": 1, "noise": 0.1}
