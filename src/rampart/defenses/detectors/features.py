"""Reading a layer's activations during the classifier's own forward pass, with gradients.

The detectors that look inside the model (Mahalanobis, the learned detector) need the
activations of one layer, by default the penultimate features: the input of the last
``nn.Linear``, which the layer choice of ``rampart.poisoning.features`` also defaults to. A
forward hook captures them while ``Classifier.logits`` runs, so one pass gives logits and
features, and an adaptive attack can differentiate through both.
"""

from __future__ import annotations

import torch
from torch import nn

from rampart.errors import ConfigError
from rampart.models import Classifier


class FeatureTap:
    """Logits and flattened activations ``(N, D)`` of one layer of ``model``.

    Args:
        model: the classifier.
        layer: None for the penultimate features (the input of the last ``nn.Linear``, which
            must be the classifier head), or the name of a layer (as in
            ``model.net.named_modules()``) whose *output* is read.
    """

    def __init__(self, model: Classifier, layer: str | None = None) -> None:
        from rampart.poisoning.features import resolve_layer

        if layer is not None and not isinstance(layer, str):
            raise ConfigError(f"layer must be a layer name (a string) or None, got "
                              f"{type(layer).__name__}.")
        self.model = model
        self.layer = layer
        self.name, self.module, self.take_input = resolve_layer(model.net, layer)
        self._checked = False

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[object] = []

        def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
            captured.append(inputs[0] if self.take_input else output)

        handle = self.module.register_forward_hook(hook)
        try:
            logits = self.model.logits(x)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise ConfigError(f"layer {self.name!r} ran {len(captured)} times in one forward pass "
                              "(expected once), so its activations are ambiguous; pick a layer "
                              "used exactly once with layer=NAME.")
        value = captured[0]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ConfigError(f"layer {self.name!r} produces {type(value).__name__}, not a "
                              "floating tensor; pick another layer with layer=NAME.")
        if not self._checked:
            self._check_head(logits)
            self._checked = True
        return logits, value.flatten(1)

    def _check_head(self, logits: torch.Tensor) -> None:
        """The default layer must be the classifier head: its outputs are the logits."""
        if self.layer is not None:
            return
        outputs = self.module.out_features
        classes = logits.shape[1]
        if outputs == classes or (outputs == 1 and classes == 2):
            return
        linears = [f"{name} ({m.in_features}->{m.out_features})"
                   for name, m in self.model.net.named_modules() if isinstance(m, nn.Linear)]
        raise ConfigError(
            f"the last nn.Linear, {self.name!r}, has {outputs} outputs but the model returns "
            f"{classes} logits, so it is not the classifier head and the penultimate features "
            f"are ambiguous. Pass layer=NAME: the layer whose output is the features to use "
            f"(the model's Linear layers: {', '.join(linears)})."
        )
