"""Differentially private training (DP-SGD) through Opacus.

Every sample's gradient is clipped to ``max_grad_norm`` and Gaussian noise is added to each
batch's sum, so no single training sample (a poisoned one included) can move the model much;
the privacy accountant reports the (epsilon, delta) the run spent. Opacus computes per-sample
gradients with hooks, which rules out BatchNorm (it mixes samples in a batch) and in-place
activations (they break the hooks); ``fix=True`` replaces the former with GroupNorm (via
Opacus's ``ModuleValidator.fix``) and turns the latter off.

Opacus is an optional dependency: ``pip install 'rampart[privacy]'``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rampart.errors import ConfigError
from rampart.poisoning._data import ArrayLike, as_inputs, as_labels, check_same_length

OPTIMIZERS = ("sgd", "adam")
ACCOUNTANTS = ("rdp", "prv", "gdp")


def _opacus() -> ModuleType:
    try:
        import opacus
    except ImportError:
        raise ConfigError(
            "differentially private training needs Opacus, which is not installed; install "
            "it with: pip install 'rampart[privacy]'"
        ) from None
    return opacus


def private_training_problems(net: nn.Module) -> list[str]:
    """Why ``net`` cannot be trained with Opacus as it is, one line per offending layer
    (empty when it can)."""
    _opacus()
    from opacus.validators import ModuleValidator

    problems = []
    for name, module in net.named_modules():
        label = f"{name or '<model>'} ({type(module).__name__})"
        validator = ModuleValidator.VALIDATORS.get(type(module))
        trainable = any(p.requires_grad for p in module.parameters(recurse=False))
        if validator is not None and trainable:
            # Opacus's messages run to a paragraph; their first sentence says what is wrong.
            problems.extend(f"{label}: {str(err).split('. ')[0].rstrip('.')}"
                            for err in validator(module))
        if getattr(module, "inplace", False) is True:
            problems.append(f"{label}: runs in place, which breaks Opacus's per-sample "
                            "gradient hooks")
    return problems


def make_private_compatible(net: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``net`` Opacus can train: BatchNorm replaced (by Opacus's validator) and
    in-place activations switched off. Returns the copy and the changes made."""
    _opacus()
    from opacus.validators import ModuleValidator

    before = {name: type(m).__name__ for name, m in net.named_modules()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = ModuleValidator.fix(net)
    changes = [f"{name}: {before[name]} -> {type(m).__name__}"
               for name, m in fixed.named_modules()
               if name in before and before[name] != type(m).__name__]
    for name, module in fixed.named_modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
            changes.append(f"{name}: {type(module).__name__} in place -> not in place")
    return fixed, changes


@dataclass
class PrivateTrainingResult:
    """A DP-trained model and its privacy guarantee: (epsilon, delta)-DP for the dataset."""

    net: nn.Module
    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    epochs: int
    steps: int
    sample_rate: float
    accountant: str
    changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("net")
        return out


def _check_budget(
    noise_multiplier: float | None, target_epsilon: float | None, max_grad_norm: float
) -> None:
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ConfigError(
            "give exactly one of noise_multiplier (how much noise; epsilon is then measured) "
            "or target_epsilon (the budget; the noise is then chosen to meet it)."
        )
    if noise_multiplier is not None and not noise_multiplier > 0:
        raise ConfigError(f"noise_multiplier must be positive, got {noise_multiplier}.")
    if target_epsilon is not None and not (target_epsilon > 0 and math.isfinite(target_epsilon)):
        raise ConfigError(f"target_epsilon must be a positive number, got {target_epsilon}.")
    if not max_grad_norm > 0:
        raise ConfigError(f"max_grad_norm must be positive, got {max_grad_norm}.")


def fit_private(
    net: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    epochs: int = 10,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    max_grad_norm: float = 1.0,
    delta: float | None = None,
    batch_size: int = 64,
    lr: float = 1e-2,
    optimizer: str = "adam",
    fix: bool = False,
    accountant: str = "rdp",
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> PrivateTrainingResult:
    """Train ``net`` with DP-SGD (per-sample clipping + Gaussian noise, Poisson batches).

    Args:
        net: the model; trained in place unless ``fix=True`` (which trains a fixed copy).
        x, y: training inputs and integer labels (NumPy or tensors).
        epochs: passes over the data.
        noise_multiplier: noise standard deviation relative to ``max_grad_norm``; or
        target_epsilon: the epsilon to spend over ``epochs`` (the noise is chosen to fit).
        max_grad_norm: the per-sample gradient clipping norm.
        delta: the delta of (epsilon, delta)-DP; default ``min(1e-5, 1 / (10 N))``.
        batch_size: expected batch size (Poisson sampling at rate batch_size / N).
        lr, optimizer: the optimiser (``"adam"`` or ``"sgd"`` with momentum 0.9).
        fix: let Opacus replace BatchNorm and switch in-place activations off, instead of
            refusing such models with a ``ConfigError``.
        accountant: Opacus's privacy accountant: ``"rdp"``, ``"prv"`` or ``"gdp"``.
        seed: seeds batch sampling and noise (not cryptographically secure).
        on_epoch: called with (epoch, mean loss) after each epoch.

    Returns:
        ``PrivateTrainingResult`` with the trained plain ``nn.Module`` and the epsilon spent.
    """
    _opacus()
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    _check_budget(noise_multiplier, target_epsilon, max_grad_norm)
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}.")
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got "
                          f"{accountant!r}.")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ConfigError(f"epochs and batch_size must be at least 1, got {epochs} and "
                          f"{batch_size}.")
    if not isinstance(net, nn.Module):
        raise ConfigError(f"net must be a torch.nn.Module, got {type(net).__name__}.")
    xt, _ = as_inputs(x)
    yt = as_labels(y, xt.shape[0])
    check_same_length(xt, yt)
    n = xt.shape[0]
    delta = min(1e-5, 1.0 / (10 * n)) if delta is None else float(delta)
    if not 0.0 < delta < 1.0:
        raise ConfigError(f"delta must be in (0, 1), got {delta}.")

    net.train()
    changes: list[str] = []
    problems = private_training_problems(net)
    if problems and not fix:
        listing = "\n  - ".join(problems)
        raise ConfigError(
            "this model cannot be trained with differential privacy as it is:\n  - "
            f"{listing}\nPass fix=True to let Opacus replace BatchNorm with GroupNorm and to "
            "switch in-place activations off, or change the model."
        )
    if problems:
        net, changes = make_private_compatible(net)
        remaining = private_training_problems(net)
        if remaining:
            raise ConfigError("Opacus could not fix these layers:\n  - "
                              + "\n  - ".join(remaining))
    net.train()

    torch.manual_seed(seed)
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    loader = DataLoader(TensorDataset(xt.cpu(), yt), batch_size=min(int(batch_size), n),
                        shuffle=True, generator=torch.Generator().manual_seed(seed))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = (torch.optim.Adam(params, lr=lr) if optimizer == "adam"
           else torch.optim.SGD(params, lr=lr, momentum=0.9))
    noise = torch.Generator(device=device).manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure RNG and full backward hooks
        engine = PrivacyEngine(accountant=accountant)
        if target_epsilon is not None:
            model, opt, loader = engine.make_private_with_epsilon(
                module=net, optimizer=opt, data_loader=loader, target_epsilon=target_epsilon,
                target_delta=delta, epochs=int(epochs), max_grad_norm=max_grad_norm,
                noise_generator=noise)
        else:
            model, opt, loader = engine.make_private(
                module=net, optimizer=opt, data_loader=loader,
                noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                noise_generator=noise)
        steps = _train(model, opt, loader, int(epochs), device, on_epoch)
        epsilon = float(engine.get_epsilon(delta))
    plain = model.to_standard_module().eval()
    return PrivateTrainingResult(
        net=plain, epsilon=epsilon, delta=delta, noise_multiplier=float(opt.noise_multiplier),
        max_grad_norm=float(max_grad_norm), epochs=int(epochs), steps=steps,
        sample_rate=float(1.0 / len(loader)), accountant=accountant, changes=changes,
    )


def _train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loader: Any,
    epochs: int,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None,
) -> int:
    """The DP-SGD loop; returns the number of optimiser steps taken."""
    steps = 0
    for epoch in range(epochs):
        total, seen = 0.0, 0
        for xb, yb in loader:
            if xb.shape[0] == 0:  # Poisson sampling can draw an empty batch
                continue
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad(set_to_none=True)
            try:
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
            except RuntimeError as exc:
                if "inplace" in str(exc).lower() or "in-place" in str(exc).lower():
                    raise ConfigError(
                        "the model modifies a tensor in place inside forward() (e.g. "
                        "x.relu_() or x += ...), which breaks Opacus's per-sample gradients; "
                        "use out-of-place operations."
                    ) from exc
                raise
            opt.step()
            steps += 1
            total += float(loss.detach()) * xb.shape[0]
            seen += xb.shape[0]
        if on_epoch is not None:
            on_epoch(epoch, total / max(seen, 1))
    return steps
