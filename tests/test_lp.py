"""Property tests for the shared Lp geometry."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rampart.attacks.lp import (
    clip_to_bounds,
    lp_norm,
    project,
    project_l1_ball,
    random_start,
    step_direction,
)

NORMS = ["linf", "l2", "l1"]
arrays = st.integers(min_value=0, max_value=2**31 - 1).map(
    lambda seed: torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(seed)) * 2
)


def _l1_projection_by_bisection(v: np.ndarray, eps: float) -> np.ndarray:
    """Reference: soft-threshold with theta found by bisection on sum(max(|v|-theta,0)) = eps."""
    if np.abs(v).sum() <= eps:
        return v
    lo, hi = 0.0, float(np.abs(v).max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.clip(np.abs(v) - mid, 0, None).sum() > eps:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.clip(np.abs(v) - hi, 0, None)


@settings(max_examples=60, deadline=None)
@given(delta=arrays, eps=st.floats(0.0, 5.0), norm=st.sampled_from(NORMS))
def test_projection_lands_in_ball_and_is_idempotent(delta, eps, norm):
    p = project(delta, norm, eps)
    assert torch.all(lp_norm(p, norm) <= eps * (1 + 1e-5) + 1e-6)
    assert torch.allclose(project(p, norm, eps), p, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(delta=arrays, eps=st.floats(0.01, 5.0))
def test_l1_projection_is_exact(delta, eps):
    got = project_l1_ball(delta, eps).reshape(5, -1).double().numpy()
    flat = delta.reshape(5, -1).double().numpy()
    for row, mine in zip(flat, got, strict=True):
        assert np.allclose(mine, _l1_projection_by_bisection(row, eps), atol=1e-4)


def test_l1_projection_beats_rescaling():
    """The exact projection is strictly closer than shrinking the vector, for a generic v."""
    v = torch.tensor([[3.0, 1.0, 0.2, -0.1]])
    exact = project_l1_ball(v, 1.0)
    scaled = v / lp_norm(v, "l1")
    assert torch.dist(exact, v) < torch.dist(scaled, v)
    assert torch.allclose(exact, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))


def test_per_sample_eps():
    delta = torch.ones(3, 4)
    eps = torch.tensor([0.5, 1.0, 2.0])
    assert torch.allclose(lp_norm(project(delta, "l2", eps), "l2"), eps)
    assert torch.allclose(lp_norm(project(delta, "l1", eps), "l1"), eps)
    assert torch.allclose(lp_norm(project(delta, "linf", eps), "linf"), torch.tensor([0.5, 1, 1]))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 3.0), norm=st.sampled_from(NORMS))
def test_random_start_inside_ball(seed, eps, norm):
    x = torch.zeros(8, 2, 5)
    d = random_start(x, norm, eps, torch.Generator().manual_seed(seed))
    assert d.shape == x.shape
    assert torch.all(lp_norm(d, norm) <= eps * (1 + 1e-5))


def test_random_start_fills_the_ball():
    """Uniform in the ball: in d dimensions most of the mass lies near the surface."""
    x = torch.zeros(2000, 10)
    g = torch.Generator().manual_seed(0)
    for norm in NORMS:
        radii = lp_norm(random_start(x, norm, 1.0, g), norm)
        # For every norm ball the volume scales as r^d, so P(r <= 0.9) = 0.9**10 ~= 0.35.
        frac = float((radii <= 0.9).float().mean())
        assert frac == pytest.approx(0.9**10, abs=0.05), norm


def test_step_directions_have_unit_norm():
    g = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(step_direction(g, "linf"), g.sign())
    assert torch.allclose(lp_norm(step_direction(g, "l2"), "l2"), torch.ones(4))
    d1 = step_direction(g, "l1", l1_sparsity=0.9)
    assert torch.allclose(lp_norm(d1, "l1"), torch.ones(4))
    assert torch.all((d1 != 0).sum(dim=1) == 5)  # top 10% of 50 coordinates
    top = g.abs().topk(5, dim=1).indices
    assert torch.all(torch.gather(d1, 1, top) != 0)


def test_l1_step_skips_coordinates_stuck_at_bounds():
    g = torch.tensor([[5.0, -4.0, 1.0, 0.5]])
    x = torch.tensor([[1.0, 0.0, 0.5, 0.5]])  # first two pinned where the gradient pushes out
    d = step_direction(g, "l1", x_adv=x, bounds=(0.0, 1.0), l1_sparsity=0.5)
    assert d[0, 0] == 0 and d[0, 1] == 0 and d[0, 2] > 0


def test_clip_to_bounds():
    x = torch.tensor([[0.1, 0.9]])
    d = clip_to_bounds(x, torch.tensor([[-0.5, 0.5]]), (0.0, 1.0))
    assert torch.allclose(x + d, torch.tensor([[0.0, 1.0]]))
