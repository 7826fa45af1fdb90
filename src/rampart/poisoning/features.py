"""Internal activations of a model, the representation the data scanners look at.

By default this is the penultimate layer: the input of the model's last ``nn.Linear`` (the
features the classifier head sees). Backdoored samples tend to separate from clean ones
there, because the network has learned a dedicated "trigger" feature.
"""

from __future__ import annotations

import torch
from torch import nn

from rampart.errors import ConfigError
from rampart.poisoning._data import ArrayLike, as_inputs
from rampart.poisoning._model import Model, device_of, forward_fn, module_of


def penultimate_layer(net: nn.Module) -> tuple[str, nn.Module]:
    """The model's last ``nn.Linear`` (by registration order), whose input is taken."""
    found = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        names = [name for name, _ in net.named_modules() if name]
        raise ConfigError(
            "could not find the penultimate layer: the model has no nn.Linear classifier "
            "head. Pass layer=NAME to read the output of a named layer instead "
            f"(this model's layers: {_listing(names)})."
        )
    return found[-1]


def _listing(names: list[str], limit: int = 12) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def resolve_layer(net: nn.Module, layer: str | nn.Module | None) -> tuple[str, nn.Module, bool]:
    """(name, module, take_input): where to read activations from."""
    if layer is None:
        name, module = penultimate_layer(net)
        return name, module, True
    modules = dict(net.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module, False
        raise ConfigError("the layer module given is not part of the model.")
    if layer not in modules or not layer:
        raise ConfigError(
            f"the model has no layer named {layer!r}; pick one of: "
            f"{_listing([n for n in modules if n])}."
        )
    return layer, modules[layer], False


def extract_features(
    model: Model,
    x: ArrayLike,
    layer: str | nn.Module | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Activations for every input, flattened to (N, D), as a float tensor on the CPU.

    Args:
        model: a ``rampart.Classifier`` (its normalisation is applied) or an ``nn.Module``.
        x: inputs (N, ...), NumPy or tensor.
        layer: None for the penultimate layer (the input of the last ``nn.Linear``), or the
            name (as in ``net.named_modules()``) or module whose *output* is read.
        batch_size: inputs per forward pass.
    """
    xt, _ = as_inputs(x)
    net = module_of(model)
    name, module, take_input = resolve_layer(net, layer)
    forward, device = forward_fn(model), device_of(model)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
        value = inputs[0] if take_input else output
        if not isinstance(value, torch.Tensor):
            raise ConfigError(
                f"layer {name!r} produces {type(value).__name__}, not a tensor; pick another "
                "layer."
            )
        captured.append(value.detach().flatten(1).float().cpu())

    was_training = net.training
    handle = module.register_forward_hook(hook)
    net.eval()
    try:
        with torch.no_grad():
            for chunk in xt.split(batch_size):
                before = len(captured)
                forward(chunk.to(device))
                if len(captured) != before + 1:
                    raise ConfigError(
                        f"layer {name!r} ran {len(captured) - before} times in one forward pass "
                        "(expected once); pick a layer used exactly once, with layer=NAME."
                    )
    finally:
        handle.remove()
        net.train(was_training)
    return torch.cat(captured)
