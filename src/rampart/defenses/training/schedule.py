"""Per-epoch schedules: the eps curriculum and the learning rate.

Both are pure functions of the epoch number, so a resumed run needs no scheduler state to
continue exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rampart.errors import ConfigError

LR_SCHEDULES = ("constant", "cosine", "step", "one-cycle")

#: Where the one-cycle schedule peaks, as a share of the epochs (Wong et al.'s 2/5).
ONE_CYCLE_PEAK = 0.4


class EpsSchedule:
    """The training eps of each epoch (0-based).

    By default the full ``eps`` from the first epoch. With ``ramp_epochs`` it grows linearly
    from ``start`` and reaches ``eps`` in epoch ``ramp_epochs - 1`` (a curriculum: a small
    network trained at the full budget from the start can collapse to a constant prediction).
    ``values`` gives every epoch's eps explicitly instead; the last value repeats.
    """

    def __init__(self, eps: float, ramp_epochs: int = 0, start: float = 0.0,
                 values: Sequence[float] | None = None) -> None:
        if eps < 0:
            raise ConfigError(f"eps must be >= 0, got {eps}.")
        if ramp_epochs < 0:
            raise ConfigError(f"ramp_epochs must be >= 0, got {ramp_epochs}.")
        if not 0 <= start <= eps:
            raise ConfigError(f"the curriculum start must be in [0, eps={eps}], got {start}.")
        if values is not None:
            values = [float(v) for v in values]
            if not values or any(v < 0 for v in values):
                raise ConfigError("eps_schedule must be a non-empty list of eps values >= 0.")
        self.eps = float(eps)
        self.ramp_epochs = int(ramp_epochs)
        self.start = float(start)
        self.values = values

    def __call__(self, epoch: int) -> float:
        if self.values is not None:
            return self.values[min(epoch, len(self.values) - 1)]
        if self.ramp_epochs <= 1:
            return self.eps
        share = min(1.0, (epoch + 1) / self.ramp_epochs)
        return self.start + (self.eps - self.start) * share

    def ramp_done(self, epoch: int) -> bool:
        """Whether ``epoch`` trains at the final eps (early stopping waits for that)."""
        if self.values is not None:
            return epoch >= len(self.values) - 1
        return epoch + 1 >= self.ramp_epochs

    def settings(self) -> dict[str, object]:
        return {"eps": self.eps, "ramp_epochs": self.ramp_epochs, "start": self.start,
                "values": self.values}


def learning_rate(base: float, schedule: str, progress: float, epochs: int) -> float:
    """The learning rate after ``progress`` epochs (0-based; fractional within an epoch).

    ``constant``; ``cosine`` annealing to 0 over ``epochs``; ``step``, divided by 10 at 50%
    and again at 75% of the epochs (the piecewise schedule of Madry et al. and Rice et al.);
    these three change once per epoch. ``one-cycle`` changes every batch: it rises linearly
    from 0 to ``base`` at 40% of the epochs and falls back to 0 at the end, the cyclic
    schedule that lets fast FGSM training (Wong et al.) reach its accuracy in few epochs.
    """
    epoch = math.floor(progress)
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return 0.5 * base * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
    if schedule == "step":
        drops = sum(epoch >= math.ceil(share * epochs) for share in (0.5, 0.75))
        return base * 0.1 ** drops
    if schedule == "one-cycle":
        peak = ONE_CYCLE_PEAK * max(epochs, 1)
        if progress <= peak:
            return base * progress / peak
        return base * max(0.0, (epochs - progress) / (epochs - peak))
    raise ConfigError(f"unknown lr schedule {schedule!r}; use one of {', '.join(LR_SCHEDULES)}.")


def per_batch(schedule: str) -> bool:
    """Whether ``schedule`` sets the learning rate before every batch, not once an epoch."""
    return schedule == "one-cycle"
