"""Lp geometry shared by every attack: norms, projections, step directions, random starts.

All functions work on a batch: the first dimension indexes samples and every other
dimension is flattened. ``eps`` may be one number or one value per sample.
"""

from __future__ import annotations

import math

import torch

NORMS = ("linf", "l2", "l1")
_TINY = 1e-12


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _per_sample(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A value per sample, shaped to broadcast against ``like``."""
    v = torch.as_tensor(value, device=like.device, dtype=like.dtype)
    if v.ndim == 0:
        v = v.expand(like.shape[0])
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a batch of perturbations, shape ``(N,)``."""
    flat = _flat(delta)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")


def project(delta: torch.Tensor, norm: str, eps: float | torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each perturbation onto its ``eps``-ball."""
    if norm == "linf":
        if isinstance(eps, float | int):
            return delta.clamp(-eps, eps)
        e = _per_sample(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)
    if norm == "l2":
        n = lp_norm(delta, "l2").reshape(-1, *([1] * (delta.ndim - 1)))
        factor = torch.clamp(_per_sample(eps, delta) / (n + _TINY), max=1.0)
        return delta * factor
    if norm == "l1":
        return project_l1_ball(delta, eps)
    raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")


def project_l1_ball(delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    """Exact projection onto the l1 ball (Duchi et al., 2008), batched.

    Sort magnitudes, find the largest ``rho`` with ``mu_rho > (sum_{i<=rho} mu_i - eps)/rho``
    and soft-threshold every coordinate by ``theta = (sum_{i<=rho} mu_i - eps) / rho``.
    """
    flat = _flat(delta)
    mags = flat.abs()
    radius = _per_sample(eps, flat).reshape(-1)
    outside = mags.sum(dim=1) > radius
    if not bool(outside.any()):
        return delta
    mu, _ = mags.sort(dim=1, descending=True)
    cums = mu.cumsum(dim=1)
    ranks = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    feasible = mu - (cums - radius[:, None]) / ranks > 0
    rho = (feasible * ranks).amax(dim=1).clamp_min(1)  # the last feasible rank (1-based)
    theta = (cums.gather(1, (rho - 1).long()[:, None]).squeeze(1) - radius) / rho
    shrunk = flat.sign() * torch.clamp(mags - theta[:, None], min=0.0)
    out = torch.where(outside[:, None], shrunk, flat)
    return out.reshape(delta.shape)


def step_direction(
    grad: torch.Tensor,
    norm: str,
    x_adv: torch.Tensor | None = None,
    bounds: tuple[float, float] | None = None,
    l1_sparsity: float = 0.99,
) -> torch.Tensor:
    """The steepest-ascent direction of unit norm for a gradient.

    linf: the sign of the gradient. l2: the gradient over its l2 norm. l1: a sparse step
    on the top ``1 - l1_sparsity`` fraction of coordinates by gradient magnitude, skipping
    coordinates pinned at an input bound that the gradient pushes further out (a step there
    would be clipped away and waste budget).
    """
    if norm == "linf":
        return grad.sign()
    if norm == "l2":
        n = lp_norm(grad, "l2").reshape(-1, *([1] * (grad.ndim - 1)))
        return grad / (n + _TINY)
    if norm == "l1":
        return _sparse_l1_direction(grad, x_adv, bounds, l1_sparsity)
    raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")


def _sparse_l1_direction(
    grad: torch.Tensor,
    x_adv: torch.Tensor | None,
    bounds: tuple[float, float] | None,
    sparsity: float,
) -> torch.Tensor:
    flat = _flat(grad)
    mags = flat.abs()
    if x_adv is not None and bounds is not None:
        xa = _flat(x_adv)
        stuck = ((xa <= bounds[0]) & (flat < 0)) | ((xa >= bounds[1]) & (flat > 0))
        mags = mags.masked_fill(stuck, 0.0)
    k = max(1, math.ceil((1.0 - sparsity) * flat.shape[1]))
    top = mags.topk(k, dim=1).indices
    chosen = torch.zeros_like(flat).scatter_(1, top, 1.0) * (mags > 0)
    direction = flat.sign() * chosen
    count = chosen.sum(dim=1, keepdim=True).clamp_min(1.0)
    return (direction / count).reshape(grad.shape)


def random_start(
    x: torch.Tensor, norm: str, eps: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A perturbation drawn uniformly from the ``eps``-ball (before clipping to bounds)."""
    n, d = x.shape[0], x[0].numel()
    kw = {"generator": generator, "device": x.device, "dtype": x.dtype}
    radius = _per_sample(eps, x)
    if norm == "linf":
        return (torch.rand(x.shape, **kw) * 2 - 1) * radius
    if norm == "l2":
        direction = torch.randn(n, d, **kw)
        direction = direction / (direction.norm(dim=1, keepdim=True) + _TINY)
        scale = torch.rand(n, 1, **kw) ** (1.0 / d)
        return (direction * scale).reshape(x.shape) * radius
    if norm == "l1":
        # Normalised exponentials with one slack coordinate are uniform on the simplex
        # interior; random signs spread that over the whole l1 ball.
        expo = -torch.log(torch.rand(n, d + 1, **kw).clamp_min(_TINY))
        point = expo[:, :d] / expo.sum(dim=1, keepdim=True)
        signs = torch.randint(0, 2, (n, d), generator=generator, device=x.device).to(x.dtype)
        return (point * (2 * signs - 1)).reshape(x.shape) * radius
    raise ValueError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")


def clip_to_bounds(
    x: torch.Tensor, delta: torch.Tensor, bounds: tuple[float, float]
) -> torch.Tensor:
    """The part of ``delta`` that keeps ``x + delta`` inside the input bounds."""
    return (x + delta).clamp(bounds[0], bounds[1]) - x


class FeasibleSet:
    """The eps-ball around ``x`` intersected with the input bounds, for iterative attacks.

    For linf the set is a box, so its limits are computed once and each projection is one
    clamp; for l2 and l1 a point is projected onto the ball and then clipped to the bounds
    (clipping only shrinks coordinates, so the result stays in the ball).
    """

    def __init__(
        self, x: torch.Tensor, norm: str, eps: float | torch.Tensor, bounds: tuple[float, float]
    ) -> None:
        self.x, self.norm, self.eps, self.bounds = x, norm, eps, bounds
        if norm == "linf":
            radius = eps if isinstance(eps, float | int) else _per_sample(eps, x)
            self.lower = (x - radius).clamp_min(bounds[0])
            self.upper = (x + radius).clamp_max(bounds[1])

    def project(self, x_adv: torch.Tensor) -> torch.Tensor:
        """The closest feasible point (in place for linf)."""
        if self.norm == "linf":
            return x_adv.clamp_(self.lower, self.upper)
        return self.x + clip_to_bounds(self.x, project(x_adv - self.x, self.norm, self.eps),
                                       self.bounds)

    def subset(self, keep: torch.Tensor) -> FeasibleSet:
        """The same set restricted to the samples selected by the boolean mask ``keep``."""
        eps = self.eps if isinstance(self.eps, float | int) else self.eps[keep]
        subset = FeasibleSet.__new__(FeasibleSet)
        subset.x, subset.norm, subset.eps, subset.bounds = self.x[keep], self.norm, eps, self.bounds
        if self.norm == "linf":
            subset.lower, subset.upper = self.lower[keep], self.upper[keep]
        return subset
