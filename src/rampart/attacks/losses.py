"""Per-sample attack objectives: cross-entropy, the Carlini-Wagner margin and DLR.

Every loss returns one value per sample that the attacker wants to *increase*, for both
untargeted (move away from the true label) and targeted (move towards the target) attacks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _best_other(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The largest logit among the classes other than ``label``."""
    masked = logits.scatter(1, label[:, None], float("-inf"))
    return masked.amax(dim=1)


def margin(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Positive exactly when the attack has succeeded on that sample.

    Untargeted: best other logit minus the true logit. Targeted: target logit minus the
    best logit of any other class.
    """
    if targets is None:
        return _best_other(logits, y) - logits.gather(1, y[:, None]).squeeze(1)
    return logits.gather(1, targets[:, None]).squeeze(1) - _best_other(logits, targets)


def cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
) -> torch.Tensor:
    """CE of the true label (untargeted), or minus CE of the target label (targeted)."""
    if targets is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, targets, reduction="none")


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin}


def get_loss(name: str) -> LossFn:
    """Look a loss up by name, with a clear error for unknown names."""
    from rampart.errors import ConfigError

    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; use one of {', '.join(LOSSES)}") from None


def is_success(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Whether the prediction left the true class (or reached the target)."""
    pred = logits.argmax(dim=1)
    return pred != y if targets is None else pred == targets


def dlr_min_classes(targeted: bool) -> int:
    """How many classes the DLR loss needs: 3 untargeted (it reads the third-largest
    logit), 4 targeted (it averages the third- and fourth-largest)."""
    return 4 if targeted else 3


def check_dlr_classes(num_classes: int, targeted: bool, attack: str = "this attack") -> None:
    """Raise a ``ConfigError`` that points to APGD-CE when a model has too few classes."""
    need = dlr_min_classes(targeted)
    if num_classes < need:
        from rampart.errors import ConfigError

        kind = "targeted DLR" if targeted else "DLR"
        raise ConfigError(
            f"{attack} uses the {kind} loss, which needs at least {need} classes, but this "
            f"model has {num_classes}. Use APGD with cross-entropy instead "
            "(attack 'apgd-ce', or APGD(loss='ce'))."
        )


def dlr(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein, 2020), signed so the attacker maximises it.

    With logits sorted in decreasing order ``z_pi1 >= z_pi2 >= ...``:

    - untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)``;
    - targeted: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``.

    The ratio is invariant to shifting and rescaling the logits, so it does not saturate
    the way cross-entropy does on overconfident models. Needs 3 classes (4 targeted).
    """
    check_dlr_classes(logits.shape[1], targets is not None, "the DLR loss")
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if targets is None:
        top, index = logits.topk(3, dim=1)
        best_other = torch.where(index[:, 0] == y, top[:, 1], top[:, 0])
        return (best_other - z_y) / (top[:, 0] - top[:, 2] + 1e-12)
    top = logits.topk(4, dim=1).values
    z_t = logits.gather(1, targets[:, None]).squeeze(1)
    return (z_t - z_y) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
