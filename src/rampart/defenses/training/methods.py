"""Training methods: how one batch becomes a loss (clean, PGD-AT, fast FGSM, TRADES).

The inner maximisation is a lean loop over rampart's Lp geometry (``rampart.attacks.lp``)
rather than a call to ``rampart.attacks.PGD``, for four reasons:

- training wants the *last* iterate of a fixed number of steps (the point of highest loss
  Madry et al. train on); ``PGD`` with ``early_stop=False`` keeps each sample's *first*
  adversarial point, which is a weaker, different training signal;
- TRADES maximises a KL divergence, which no attack loss offers;
- ``Attack.__call__`` re-validates every batch (bounds, NaN, labels: host syncs) and runs an
  extra clean forward per batch for its result rows; the trainer validates the data once;
- under DistributedDataParallel the attack must run on the bare module, never through the
  DDP wrapper, while the loss forward goes through it.

Evaluation (robust validation accuracy, the catastrophic-overfitting check) does use
``rampart.attacks.PGD`` and ``FGSM``: there the attack's early stop and bookkeeping are what
a measurement needs. Adversarial examples are generated in eval mode with the parameters
in eval mode (``eval_mode``), so dropout is off and batch-norm statistics are not updated by
the attack's forward passes; gradients are taken with respect to the inputs only
(``torch.autograd.grad``), so parameter gradients are neither computed nor accumulated and
the parameters' ``requires_grad`` flags, which DistributedDataParallel hooks into, are never
touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rampart.attacks.lp import FeasibleSet, random_start, step_direction
from rampart.errors import ConfigError
from rampart.models import Classifier

METHODS = ("pgd", "fast-fgsm", "n-fgsm", "trades", "clean")
SINGLE_STEP = ("fast-fgsm", "n-fgsm")  # methods the catastrophic-overfitting check watches
Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class BatchLoss:
    """One batch's training loss and the logits the accuracy is counted on."""

    loss: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor


@dataclass
class StepInputs:
    """What a method needs for one batch.

    ``forward`` is the differentiable, normalised forward of the network being trained (through
    the DDP wrapper when there is one, in train mode); ``model`` is a ``Classifier`` over the
    bare network for generating adversarial examples.
    """

    forward: Forward
    model: Classifier
    x: torch.Tensor
    y: torch.Tensor
    norm: str
    eps: float
    generator: torch.Generator


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[None]:
    """``net`` in eval mode for the block; its previous mode is restored afterwards."""
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def pgd_perturb(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: str,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator,
    start: bool = True,
) -> torch.Tensor:
    """``steps`` steps of projected steepest ascent on the cross-entropy from a uniform random
    start in the eps-ball (clipped to the bounds); returns the last iterate.

    With ``steps=1`` and ``step_size=1.25 * eps`` this is the fast FGSM of Wong et al. (2020).
    """
    if eps <= 0 or x.shape[0] == 0:
        return x
    feasible = FeasibleSet(x, norm, eps, model.bounds)
    x_adv = x.clone()
    if start:
        x_adv = feasible.project(x_adv + random_start(x, norm, eps, generator))
    with eval_mode(model.net), torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model.logits(x_adv), y, reduction="sum")
            grad = torch.autograd.grad(loss, x_adv)[0]
            x_adv = x_adv.detach()
            direction = step_direction(grad, norm, x_adv if norm == "l1" else None, model.bounds)
            x_adv = feasible.project(x_adv.add_(direction, alpha=step_size))
    return x_adv.detach()


def trades_perturb(
    model: Classifier,
    x: torch.Tensor,
    norm: str,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """TRADES' inner maximisation: from ``x + 0.001 * N(0, 1)``, steps that increase
    ``KL(f(x) || f(x'))`` (the clean prediction against the perturbed one), projected onto the
    eps-ball and the bounds. Zhang et al. (2019), the authors' recipe."""
    if eps <= 0 or x.shape[0] == 0:
        return x
    feasible = FeasibleSet(x, norm, eps, model.bounds)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_adv = feasible.project(x + 0.001 * noise)
    with eval_mode(model.net):
        with torch.no_grad():
            p_clean = F.softmax(model.logits(x), dim=1)
        with torch.enable_grad():
            for _ in range(steps):
                x_adv.requires_grad_(True)
                log_p_adv = F.log_softmax(model.logits(x_adv), dim=1)
                loss = F.kl_div(log_p_adv, p_clean, reduction="sum")
                grad = torch.autograd.grad(loss, x_adv)[0]
                x_adv = x_adv.detach()
                direction = step_direction(grad, norm, x_adv if norm == "l1" else None,
                                           model.bounds)
                x_adv = feasible.project(x_adv.add_(direction, alpha=step_size))
    return x_adv.detach()


def trades_loss(
    logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float
) -> torch.Tensor:
    """``CE(f(x), y) + beta * KL(f(x) || f(x'))``, the KL averaged over the batch (TRADES)."""
    natural = F.cross_entropy(logits_clean, y)
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1),
                      reduction="batchmean")
    return natural + beta * robust


class TrainingMethod:
    """Turns a batch into a loss. Subclasses implement ``batch_loss``."""

    name = "method"

    def batch_loss(self, step: StepInputs) -> BatchLoss:
        raise NotImplementedError

    def settings(self) -> dict[str, object]:
        """The method's settings, for checkpoints' fingerprints and reports."""
        return {"method": self.name, **{k: v for k, v in vars(self).items()
                                         if not k.startswith("_")}}


class CleanTraining(TrainingMethod):
    """Plain cross-entropy on the clean inputs: the baseline every defence is compared to."""

    name = "clean"

    def batch_loss(self, step: StepInputs) -> BatchLoss:
        logits = step.forward(step.x)
        return BatchLoss(F.cross_entropy(logits, step.y), logits, step.y)


class ReplacementTraining(TrainingMethod):
    """Cross-entropy on a batch whose first ``adv_fraction`` share is replaced by adversarial
    examples (the batch is already shuffled, so that share is a random subset). An
    ``adv_fraction`` of 1 is pure adversarial training; 0.5 is Goodfellow et al.'s clean /
    adversarial mix. Clean and adversarial rows go through one forward pass."""

    def __init__(self, adv_fraction: float = 1.0) -> None:
        if not 0.0 <= adv_fraction <= 1.0:
            raise ConfigError(f"adv_fraction must be in [0, 1], got {adv_fraction}.")
        self.adv_fraction = float(adv_fraction)

    def perturb(self, step: StepInputs, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def batch_loss(self, step: StepInputs) -> BatchLoss:
        k = round(self.adv_fraction * step.x.shape[0])
        x_adv = self.perturb(step, step.x[:k], step.y[:k])
        inputs = x_adv if k == step.x.shape[0] else torch.cat([x_adv, step.x[k:]])
        logits = step.forward(inputs)
        return BatchLoss(F.cross_entropy(logits, step.y), logits, step.y)


class PGDTraining(ReplacementTraining):
    """PGD adversarial training (Madry et al., 2018): ``steps`` steps of
    ``rel_step_size * eps`` (default ``2.5 / steps``) from a random start."""

    name = "pgd"

    def __init__(self, steps: int = 10, rel_step_size: float | None = None,
                 adv_fraction: float = 1.0) -> None:
        super().__init__(adv_fraction)
        if steps < 1:
            raise ConfigError(f"steps must be at least 1 for PGD training, got {steps}.")
        rel = 2.5 / steps if rel_step_size is None else rel_step_size
        if rel <= 0:
            raise ConfigError(f"rel_step_size must be positive, got {rel}.")
        self.steps = int(steps)
        self.rel_step_size = float(rel)

    def perturb(self, step: StepInputs, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd_perturb(step.model, x, y, step.norm, step.eps, self.steps,
                           self.rel_step_size * step.eps, step.generator)


class FastFGSMTraining(ReplacementTraining):
    """Fast adversarial training (Wong et al., 2020): one FGSM step of ``step * eps``
    (default 1.25) from a uniform random start. Prone to catastrophic overfitting, which the
    trainer watches for with a PGD check after every epoch."""

    name = "fast-fgsm"

    def __init__(self, step: float = 1.25, adv_fraction: float = 1.0) -> None:
        super().__init__(adv_fraction)
        if step <= 0:
            raise ConfigError(f"the fast-FGSM step must be positive (x eps), got {step}.")
        self.step = float(step)

    def perturb(self, step: StepInputs, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd_perturb(step.model, x, y, step.norm, step.eps, 1, self.step * step.eps,
                           step.generator)


class NoiseFGSMTraining(ReplacementTraining):
    """N-FGSM (de Jorge et al., 2022): one FGSM step of ``step * eps`` (default 1) from
    uniform noise of ``noise * eps`` (default 2), without projecting back to the eps-ball
    (only to the input bounds). The larger noise and the missing projection are what keep
    single-step training from overfitting catastrophically at large eps; the training
    perturbations reach ``(noise + step) * eps``, while validation stays at eps. linf only."""

    name = "n-fgsm"

    def __init__(self, noise: float = 2.0, step: float = 1.0, adv_fraction: float = 1.0) -> None:
        super().__init__(adv_fraction)
        if noise < 0 or step <= 0:
            raise ConfigError(f"n-fgsm needs noise >= 0 and step > 0 (x eps), got {noise} "
                              f"and {step}.")
        self.noise = float(noise)
        self.step = float(step)

    def perturb(self, step: StepInputs, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if step.norm != "linf":
            raise ConfigError(f"n-fgsm is defined for linf; for {step.norm} use fast-fgsm or "
                              "pgd.")
        if step.eps <= 0 or x.shape[0] == 0:
            return x
        lo, hi = step.model.bounds
        uniform = torch.rand(x.shape, generator=step.generator, device=x.device, dtype=x.dtype)
        start = (x + (2 * uniform - 1) * (self.noise * step.eps)).clamp_(lo, hi)
        with eval_mode(step.model.net), torch.enable_grad():
            start.requires_grad_(True)
            loss = F.cross_entropy(step.model.logits(start), y, reduction="sum")
            grad = torch.autograd.grad(loss, start)[0]
        return start.detach().add_(grad.sign(), alpha=self.step * step.eps).clamp_(lo, hi)


class TRADESTraining(TrainingMethod):
    """TRADES (Zhang et al., 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with ``x'``
    maximising the KL by ``steps`` steps of ``rel_step_size * eps`` (default ``2.5 / steps``).
    Clean and perturbed inputs go through one forward pass."""

    name = "trades"

    def __init__(self, beta: float = 6.0, steps: int = 10,
                 rel_step_size: float | None = None) -> None:
        if beta < 0:
            raise ConfigError(f"trades_beta must be >= 0, got {beta}.")
        if steps < 1:
            raise ConfigError(f"steps must be at least 1 for TRADES, got {steps}.")
        self.beta = float(beta)
        self.steps = int(steps)
        self.rel_step_size = float(2.5 / steps if rel_step_size is None else rel_step_size)

    def batch_loss(self, step: StepInputs) -> BatchLoss:
        x_adv = trades_perturb(step.model, step.x, step.norm, step.eps, self.steps,
                               self.rel_step_size * step.eps, step.generator)
        n = step.x.shape[0]
        logits = step.forward(torch.cat([step.x, x_adv]))
        loss = trades_loss(logits[:n], logits[n:], step.y, self.beta)
        return BatchLoss(loss, logits[n:], step.y)


def make_method(
    name: str,
    steps: int = 10,
    rel_step_size: float | None = None,
    adv_fraction: float = 1.0,
    trades_beta: float = 6.0,
    fgsm_step: float = 1.25,
) -> TrainingMethod:
    """The method called ``name`` (one of ``METHODS``) with the settings that apply to it."""
    key = name.lower().replace("_", "-")
    if key in ("trades", "clean") and adv_fraction != 1.0:
        raise ConfigError(
            f"adv_fraction applies to pgd, fast-fgsm and n-fgsm only; {key} "
            + ("balances clean and robust terms with trades_beta." if key == "trades"
               else "trains on clean inputs only.")
        )
    if key == "pgd":
        return PGDTraining(steps, rel_step_size, adv_fraction)
    if key in ("fast-fgsm", "fgsm", "fgsm-rs"):
        return FastFGSMTraining(fgsm_step, adv_fraction)
    if key == "n-fgsm":
        return NoiseFGSMTraining(adv_fraction=adv_fraction)
    if key == "trades":
        return TRADESTraining(trades_beta, steps, rel_step_size)
    if key == "clean":
        return CleanTraining()
    raise ConfigError(f"unknown training method {name!r}; use one of {', '.join(METHODS)}.")
