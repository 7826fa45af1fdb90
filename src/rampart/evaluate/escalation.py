"""Escalated models: what white-box attacks differentiate through when a model masks gradients.

When the gradient-masking diagnostics (``diagnostics.py``) find that plain gradients mislead
the attacks, the audit attacks one of these wrappers instead of the user's model. Both are
``Classifier`` subclasses around the same module, with the same bounds, class count, batch
size and device, so every attack accepts them unchanged; the audit still checks every
adversarial point on the user's own model.

- ``EOTClassifier``: Expectation over Transformation (Athalye, Carlini & Wagner, 2018,
  "Obfuscated gradients give a false sense of security"). A randomised model's logits are
  replaced by the mean log-softmax over ``samples`` stochastic forward passes, so one
  backward pass gives the gradient of the expected loss instead of one noisy draw.
- ``BPDAClassifier``: Backward Pass Differentiable Approximation, straight-through form
  (same paper). Named submodules whose forward cannot be differentiated (a quantiser, a
  JPEG-like or non-differentiable filter, a ``.detach()``, a threshold) keep their forward
  values but pass the gradient through as if they were the identity.
- ``find_blocking_modules``: the search that finds those submodules by testing each one.
- ``declarations``: what the modules say about themselves. A module may carry boolean
  attributes ``differentiable`` and ``random`` (the preprocessing defences of
  ``rampart.defenses`` do); a declared non-differentiable module gets BPDA without having to
  be found by the search, a declared random one gets EOT even if the repeated forward passes
  happened to agree. Undeclared models still go through detection alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rampart.errors import ConfigError, InputError
from rampart.models import Classifier

EOT_SAMPLES = 20  # forward passes averaged; AutoAttack's version for randomised models uses 20
EOT_ROWS_PER_BATCH = 4  # a batched EOT forward holds at most this many times batch_size rows

# A row of a module's input gradient counts as zero below this size: float32's smallest normal
# number is about 1e-38, and attacks normalise gradients with a 1e-12 guard, so anything this
# small moves nothing.
ZERO_GRAD = 1e-30
# Sizes of the input changes used to ask "does this module's output depend on its input?",
# relative to the input's standard deviation: the small one stays near the data, the large
# one crosses the steps of a coarse quantiser or a threshold that few inputs sit near.
PROBE_SCALES = (0.05, 0.5)
# A module blocks gradients when at least this share of the samples see its output change
# with the input while its input gradient is zero or missing (half: a property of the module,
# not of a few samples sitting in a flat region).
BLOCKED_SHARE = 0.5
SEARCH_ROUNDS = 4  # replacing an inner module can reveal an outer one; this bounds the rounds


class EscalatedClassifier(Classifier):
    """A ``Classifier`` that delegates its forward to another one (``inner``).

    It shares ``inner``'s module (so ``attacking()`` freezes the right parameters), bounds,
    input shape, output kind and batch size; normalisation stays inside ``inner.logits``.
    ``base`` is the user's model at the bottom of a chain of wrappers.
    """

    def __init__(self, inner: Classifier) -> None:
        if not isinstance(inner, Classifier):
            raise InputError(
                f"escalated models wrap a rampart.Classifier, got {type(inner).__name__}."
            )
        super().__init__(
            inner.net, bounds=inner.bounds, num_classes=inner._num_classes,
            input_shape=inner.input_shape, output=inner.output, batch_size=inner.batch_size,
        )
        self.inner = inner

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    @property
    def base(self) -> Classifier:
        """The user's model under every layer of escalation."""
        return base_model(self.inner)

    def describe(self) -> str:
        """One line naming the escalation, for reports (subclasses say more)."""
        return type(self).__name__

    def _remember_classes(self, out: torch.Tensor) -> torch.Tensor:
        if self._num_classes is None:
            self._num_classes = out.shape[1]
        return out


def base_model(model: Classifier) -> Classifier:
    """The user's model: ``model`` itself, or the innermost model under escalation wrappers."""
    while isinstance(model, EscalatedClassifier):
        model = model.inner
    return model


def escalations(model: Classifier) -> list[str]:
    """What the wrappers around ``model`` do, outermost first (empty for a plain model)."""
    found = []
    while isinstance(model, EscalatedClassifier):
        found.append(model.describe())
        model = model.inner
    return found


# ---------------------------------------------------------------------------------- EOT
class EOTClassifier(EscalatedClassifier):
    """Expectation over Transformation: the mean log-softmax of ``samples`` forward passes.

    Why log-softmax and not raw logits: cross-entropy of the mean log-softmax is exactly the
    mean cross-entropy over the passes, so its gradient is the EOT gradient of the loss
    APGD-CE climbs; margin and DLR read only differences between classes, which are the same
    for log-softmax as for logits, so for them it equals averaging the logits. Unlike raw
    logits, log-softmax also ignores a random shift or scale that a defence adds to each pass.

    With ``batched`` (the default) one forward carries several copies of the batch (at most
    ``max_rows`` rows, by default ``EOT_ROWS_PER_BATCH * batch_size``; halved on a GPU
    out-of-memory error), so the randomness is drawn per copy. A defence that draws its
    randomness once per call (one random resize for the whole batch) needs
    ``batched=False``: one pass per sample of the expectation, or the copies would share it.
    """

    def __init__(self, inner: Classifier, samples: int = EOT_SAMPLES, batched: bool = True,
                 max_rows: int | None = None) -> None:
        super().__init__(inner)
        if samples < 1:
            raise ConfigError(f"EOT needs at least 1 forward pass, got samples={samples}.")
        if max_rows is not None and max_rows < 1:
            raise ConfigError(f"max_rows must be at least 1, got {max_rows}.")
        self.samples = int(samples)
        self.batched = bool(batched)
        self.max_rows = int(max_rows) if max_rows is not None else (
            EOT_ROWS_PER_BATCH * inner.batch_size)

    def describe(self) -> str:
        how = "batched" if self.batched else "one pass at a time"
        return f"EOT: mean log-softmax over {self.samples} forward passes ({how})"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        copies = max(1, min(self.samples, self.max_rows // max(n, 1))) if self.batched else 1
        total: torch.Tensor | None = None
        done = 0
        while done < self.samples:
            c = min(copies, self.samples - done)
            batch = x if c == 1 else x.repeat(c, *([1] * (x.ndim - 1)))
            try:
                out = self.inner.logits(batch)
            except torch.OutOfMemoryError:
                if c == 1:
                    raise
                copies = max(1, c // 2)
                if x.is_cuda:
                    torch.cuda.empty_cache()
                continue
            part = out.log_softmax(dim=1).reshape(c, n, -1).sum(dim=0)
            total = part if total is None else total + part
            done += c
        assert total is not None
        return self._remember_classes(total / self.samples)


# ---------------------------------------------------------------------------------- BPDA
class BPDAClassifier(EscalatedClassifier):
    """Straight-through BPDA: the named submodules of ``inner.net`` differentiate as identity.

    Their forward values are kept exactly (``f(x).detach() + (x - x.detach())`` equals
    ``f(x)`` and has the gradient of ``x``); only the backward changes. The hooks that do
    this exist only while ``logits`` runs, so the user's module is left as it was.
    Each named module must map a floating tensor to one of the same shape.
    """

    def __init__(self, inner: Classifier, modules: Sequence[str]) -> None:
        super().__init__(inner)
        known = dict(inner.net.named_modules())
        names = list(dict.fromkeys(modules))
        if not names:
            raise ConfigError("BPDA needs at least one module name to replace.")
        unknown = [n for n in names if n not in known or n == ""]
        if unknown:
            raise ConfigError(
                f"no submodule named {', '.join(map(repr, unknown))} in "
                f"{type(inner.net).__name__}; names come from net.named_modules() (the whole "
                "network, '', cannot be replaced)."
            )
        self.replaced = tuple(names)

    def describe(self) -> str:
        return "BPDA: straight-through (identity) backward for " + ", ".join(
            f"{name} ({type(self.inner.net.get_submodule(name)).__name__})"
            for name in self.replaced)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with straight_through(self.inner.net, self.replaced):
            out = self.inner.logits(x)
        return self._remember_classes(out)


@contextmanager
def straight_through(net: nn.Module, names: Sequence[str]) -> Iterator[None]:
    """While active, each named submodule's backward is the identity (forward unchanged).

    A pre-hook keeps a copy of the module's input (a copy, because an in-place module would
    overwrite it) and the forward hook returns ``out.detach() + (x - x.detach())``. Calls
    whose input is not a floating tensor shaped like the output pass through untouched.
    """
    handles = []
    try:
        for name in names:
            module = net.get_submodule(name)
            stack: list[torch.Tensor | None] = []
            handles.append(module.register_forward_pre_hook(_push_input(stack)))
            handles.append(module.register_forward_hook(_pass_through(stack)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _push_input(stack: list[torch.Tensor | None]) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        first = args[0] if args else None
        ok = isinstance(first, torch.Tensor) and first.is_floating_point()
        stack.append(first.clone() if ok else None)
    return hook


def _pass_through(stack: list[torch.Tensor | None]) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
        x = stack.pop() if stack else None
        if (x is None or not isinstance(out, torch.Tensor) or out.shape != x.shape
                or not out.is_floating_point()):
            return None
        return out.detach() + (x - x.detach()).to(out.dtype)
    return hook


# ---------------------------------------------------------------------------------- declarations
@dataclass
class Declarations:
    """What the modules of a network declare about their own forward pass.

    A module declares by carrying a boolean ``differentiable`` or ``random`` attribute (a
    class attribute or a property; anything that is not a ``bool`` is ignored).
    ``non_differentiable``: the deepest modules with ``differentiable = False`` whose
    gradient the audit replaces with BPDA's straight-through identity. A container that
    declares its children's combined flag (``rampart.defenses.Preprocessed``) stands back for
    the children that declare it themselves, so BPDA replaces exactly the preprocessing steps
    and never the network behind them; the whole network (``''``) is never named, since it
    cannot be made straight-through (its dead gradients are still caught by detection).
    ``random``: the deepest modules with ``random = True`` (``''`` when only the network
    itself declares it); the audit attacks through EOT.
    """

    non_differentiable: list[str] = field(default_factory=list)
    random: list[str] = field(default_factory=list)


def declarations(net: nn.Module) -> Declarations:
    """Read every submodule's ``differentiable`` and ``random`` declaration (see above)."""
    blocking = [name for name, module in net.named_modules()
                if _declared(module, "differentiable") is False]
    random = [name for name, module in net.named_modules() if _declared(module, "random")]
    return Declarations(
        non_differentiable=[n for n in _deepest(blocking) if n],
        random=_deepest(random))


def declared_attack_model(model: Classifier, eot_samples: int = EOT_SAMPLES) -> Classifier:
    """The model white-box attacks should use, from the declarations alone (no checks).

    BPDA over the declared non-differentiable modules, then EOT (batched) when any module
    declares randomness; ``model`` itself when nothing is declared. The audit uses this when
    its diagnostics are switched off; with them on, ``diagnostics.preflight`` combines the
    declarations with detection.
    """
    found = declarations(model.net)
    attack_model = model
    if found.non_differentiable:
        attack_model = BPDAClassifier(attack_model, found.non_differentiable)
    if found.random:
        attack_model = EOTClassifier(attack_model, samples=eot_samples)
    return attack_model


def _deepest(names: list[str]) -> list[str]:
    return [n for n in names if not any(_inside(o, n) for o in names)]


def _declared(module: nn.Module, flag: str) -> bool | None:
    value = getattr(module, flag, None)
    return value if isinstance(value, bool) else None


def _inside(name: str, parent: str) -> bool:
    """Is the module ``name`` strictly inside ``parent`` (names from ``named_modules``)?"""
    return name != parent and (parent == "" or name.startswith(parent + "."))


# ---------------------------------------------------------------------------------- search
@dataclass
class BlockingSearch:
    """What the search for gradient-blocking submodules found.

    ``replaced``: modules BPDA can make straight-through (shape-preserving). ``unreplaceable``:
    blocking modules that change the shape or type of their input, with the reason.
    ``tested``: how many submodules were tested; ``skipped``: how many could not be (input not
    a floating tensor, a failing call, a scripted module). ``kinds``: each module's class.
    ``declared``: modules that declared themselves non-differentiable (``declarations``);
    they are replaced from the start, without having to be found.
    """

    replaced: list[str] = field(default_factory=list)
    unreplaceable: dict[str, str] = field(default_factory=dict)
    tested: int = 0
    skipped: int = 0
    kinds: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    declared: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"replaced": list(self.replaced), "unreplaceable": dict(self.unreplaceable),
                "tested": self.tested, "skipped": self.skipped, "kinds": dict(self.kinds),
                "error": self.error, "declared": list(self.declared)}


@dataclass
class _Probe:
    """One submodule's verdict from one test."""

    blocked: bool
    shape_preserving: bool
    floating: bool
    blocked_share: float


def find_blocking_modules(model: Classifier, x: torch.Tensor, seed: int = 0,
                          declared: Sequence[str] = ()) -> BlockingSearch:
    """Find the submodules of ``model.net`` that stop gradients although they use their input.

    ``declared`` names modules already known to be non-differentiable (from
    ``declarations``): they are straight-through from the first round, so the search looks
    only for blocking modules nobody declared. One that turns out to change the shape of its
    input (BPDA's identity cannot stand in for it) moves to ``unreplaceable``.

    One forward pass records the input of every submodule (its first call); each submodule is
    then called alone on that input and on changed ones (``PROBE_SCALES``), with a
    backward pass: it blocks when, for at least ``BLOCKED_SHARE`` of the samples, the output
    moved with the input while the input gradient was zero, NaN or missing. The deepest
    blocking modules are replaced first; the search repeats with them straight-through (up to
    ``SEARCH_ROUNDS`` times), since a parent may also block by itself. The whole network
    (``''``) is never a candidate. Cost: about three forward passes and one backward pass per
    submodule nesting level, on ``x``.
    """
    search = BlockingSearch(replaced=list(dict.fromkeys(declared)),
                            declared=list(dict.fromkeys(declared)))
    for name in search.declared:
        search.kinds[name] = type(model.net.get_submodule(name)).__name__
    generator = torch.Generator(device=x.device).manual_seed(seed)
    with model.attacking():
        for _ in range(SEARCH_ROUNDS):
            try:
                with straight_through(model.net, search.replaced):
                    calls = _record_inputs(model, x)
                    probes = {name: _probe(module, args, kwargs, generator)
                              for name, (module, args, kwargs) in calls.items()}
            except RuntimeError as exc:  # e.g. hooks on a scripted module
                search.error = f"{type(exc).__name__}: {exc}"
                break
            usable = {n: p for n, p in probes.items() if p is not None}
            if not search.tested:
                search.tested, search.skipped = len(usable), len(calls) - len(usable)
                for name in search.declared:
                    probe = usable.get(name)
                    if probe is not None and not (probe.shape_preserving and probe.floating):
                        search.replaced.remove(name)
                        search.unreplaceable[name] = (
                            "it declares itself non-differentiable but "
                            + ("its output is not a floating tensor" if not probe.floating
                               else "changes the shape of its input"))
            blocked = [n for n, p in usable.items() if p.blocked and n not in search.replaced]
            can = [n for n in blocked if usable[n].shape_preserving and usable[n].floating]
            deepest = [n for n in can if not any(o.startswith(n + ".") for o in can)]
            for name in blocked:
                if name in can or any(name.startswith(a + ".") or a.startswith(name + ".")
                                      for a in deepest):
                    continue
                search.unreplaceable[name] = ("its output is not a floating tensor"
                                              if not usable[name].floating else
                                              "it changes the shape of its input")
            for name in [*deepest, *search.unreplaceable]:
                search.kinds[name] = type(model.net.get_submodule(name)).__name__
            if not deepest:
                break
            search.replaced += deepest
    return search


def _record_inputs(model: Classifier,
                   x: torch.Tensor) -> dict[str, tuple[nn.Module, tuple, dict]]:
    """Each submodule's first input (args and kwargs, detached copies), in call order."""
    calls: dict[str, tuple[nn.Module, tuple, dict]] = {}
    handles = []

    def recorder(name: str) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if name not in calls:
                calls[name] = (module, _detached(args), _detached(kwargs))
        return hook

    try:
        for name, module in model.net.named_modules():
            if name:
                handles.append(module.register_forward_pre_hook(recorder(name),
                                                                with_kwargs=True))
        with torch.no_grad():
            model.logits(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_detached(v) for v in value)
    if isinstance(value, list):
        return [_detached(v) for v in value]
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


def _probe(module: nn.Module, args: tuple, kwargs: dict,
           generator: torch.Generator) -> _Probe | None:
    """Does ``module`` block gradients on this input? ``None`` when it cannot be tested."""
    if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
        return None
    inp, rest = args[0], args[1:]
    if inp.ndim == 0 or inp.shape[0] == 0:
        return None
    try:
        leaf = inp.clone().requires_grad_(True)
        with torch.enable_grad():
            out = module(leaf * 1.0, *rest, **kwargs)  # * 1.0: in-place modules need a non-leaf
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != inp.shape[0]:
            return None
        floating = out.is_floating_point()
        if floating and out.requires_grad:
            weights = torch.randn(out.shape, generator=generator, device=out.device,
                                  dtype=out.dtype)
            grad = torch.autograd.grad((out * weights).sum(), leaf, allow_unused=True)[0]
        else:
            grad = None
        scale = max(float(inp.std()) if inp.numel() > 1 else 0.0, 1e-3)
        ref = out.detach().double()
        tol = 1e-6 * (1.0 + ref.abs().flatten(1).amax(dim=1))
        changed = torch.zeros(inp.shape[0], dtype=torch.bool, device=inp.device)
        for size in PROBE_SCALES:
            noise = torch.randn(inp.shape, generator=generator, device=inp.device,
                                dtype=inp.dtype)
            with torch.no_grad():
                moved = module(inp + noise * (size * scale), *rest, **kwargs)
            if not isinstance(moved, torch.Tensor) or moved.shape != ref.shape:
                return None
            changed |= (moved.double() - ref).abs().flatten(1).amax(dim=1) > tol
    except (RuntimeError, TypeError, ValueError):
        return None
    if grad is None:
        dead = torch.ones_like(changed)
    else:
        g = grad.detach().flatten(1)
        dead = (g.abs().amax(dim=1) <= ZERO_GRAD) | ~torch.isfinite(g).all(dim=1)
    share = float((changed & dead).float().mean())
    return _Probe(blocked=share >= BLOCKED_SHARE, shape_preserving=out.shape == inp.shape,
                  floating=floating, blocked_share=share)
