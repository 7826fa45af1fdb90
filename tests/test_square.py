"""Square Attack: contract, score-only access, query accounting and strength."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import rampart
from rampart import ThreatModel, metrics
from rampart.attacks import PGD
from rampart.attacks.square import Square, l2_pattern, p_selection, window_size
from rampart.errors import ConfigError


@settings(max_examples=40, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    image=st.booleans(),
    eps=st.floats(0.0, 4.0),
    lo=st.floats(-2.0, 0.0),
    width=st.floats(0.1, 3.0),
    seed=st.integers(0, 1000),
    budget=st.integers(1, 40),
    restarts=st.integers(1, 3),
    targeted=st.sampled_from([False, "random", "least-likely"]),
)
def test_outputs_stay_in_ball_and_bounds(make_mlp, check_result, norm, image, eps, lo, width,
                                         seed, budget, restarts, targeted):
    gen = torch.Generator().manual_seed(seed)
    shape = (6, 1, 3, 4) if image else (6, 12)
    x = lo + torch.rand(*shape, generator=gen) * width
    y = torch.randint(0, 4, (6,), generator=gen)
    net = make_mlp(seed=seed)
    model = rampart.Classifier(nn.Sequential(nn.Flatten(), net) if image else net,
                               bounds=(lo, lo + width))
    threat = ThreatModel(norm=norm, eps=eps, targeted=targeted, knowledge="score")
    result = Square(n_queries=budget, restarts=restarts, seed=seed)(model, x, y, threat)
    check_result(model, x, y, result, eps)
    assert torch.all((result.queries >= 1) & (result.queries <= budget))


def test_square_never_calls_backward(trained_net, test_batch, query_only):
    x, y = test_batch[0][:40], test_batch[1][:40]
    model = rampart.Classifier(query_only(trained_net), input_shape=(1, 8, 8))
    threat = ThreatModel(norm="linf", eps=0.3, knowledge="score")
    result = Square(n_queries=200)(model, x, y, threat)
    assert metrics.attack_success_rate(result) >= 0.9
    with pytest.raises(RuntimeError, match="backward called on a score-only model"):
        PGD(steps=2)(model, x, y, ThreatModel(norm="linf", eps=0.3))


def test_square_breaks_the_digits_model_at_a_large_eps(trained_model, test_batch):
    x, y = test_batch[0][:80], test_batch[1][:80]
    linf = Square(n_queries=300)(trained_model, x, y, ThreatModel(norm="linf", eps=0.3))
    assert metrics.clean_accuracy(linf) > 0.9
    assert metrics.attack_success_rate(linf) >= 0.97
    l2 = Square(n_queries=300)(trained_model, x, y, ThreatModel(norm="l2", eps=2.0))
    assert metrics.attack_success_rate(l2) >= 0.97
    targeted = ThreatModel(norm="linf", eps=0.5, targeted="random")
    t = Square(n_queries=300)(trained_model, x, y, targeted)
    assert float(t.success.float().mean()) >= 0.9
    assert torch.equal(t.adv_predictions[t.success], t.targets[t.success])


def test_query_counts_respect_the_budget_and_stop_early(trained_model, test_batch):
    x, y = test_batch[0][:40], test_batch[1][:40]
    threat = ThreatModel(norm="linf", eps=0.15)  # breaks some samples, not all
    r = Square(n_queries=60)(trained_model, x, y, threat)
    correct, broken = r.clean_correct, r.success & r.clean_correct
    assert 5 <= int(broken.sum()) <= int(correct.sum()) - 5
    assert int(r.queries.max()) <= 60
    assert torch.all(r.queries[r.robust] == 60)  # unbroken samples use the whole budget
    # broken ones stop at the query that broke them (the last query may be the one)
    assert torch.all(r.queries[broken] <= 60)
    assert float((r.queries[broken] < 60).float().mean()) >= 0.5
    assert torch.all(r.queries[~correct] == 1)  # already wrong: only the clean check

    budgeted = ThreatModel(norm="linf", eps=0.15, query_budget=25)
    b = Square(n_queries=60)(trained_model, x, y, budgeted)
    assert int(b.queries.max()) <= 25 and torch.all(b.queries[b.robust] == 25)
    split = Square(n_queries=60, restarts=3)(trained_model, x, y, threat)
    assert int(split.queries.max()) <= 60 and torch.all(split.queries[split.robust] == 60)
    default = Square()(trained_model, x[:3], y[:3], ThreatModel(eps=0.0, query_budget=7))
    assert torch.all(default.queries[default.clean_correct] == 7)

    again = Square(n_queries=60)(trained_model, x, y, threat)
    other = Square(n_queries=60, seed=1)(trained_model, x, y, threat)
    assert torch.equal(r.x_adv, again.x_adv) and torch.equal(r.queries, again.queries)
    assert not torch.equal(r.x_adv, other.x_adv)


def test_more_queries_find_more(trained_model, test_batch):
    x, y = test_batch[0][:40], test_batch[1][:40]
    threat = ThreatModel(norm="l2", eps=1.0)
    few = Square(n_queries=10)(trained_model, x, y, threat)
    many = Square(n_queries=100)(trained_model, x, y, threat)
    assert metrics.robust_accuracy(many) < metrics.robust_accuracy(few) - 0.2


def test_p_schedule_window_and_pattern():
    # the reference's breakpoints for 10,000 iterations, and rescaled to 1,000
    assert [p_selection(0.8, i, 10000) for i in (0, 10, 11, 50, 51, 200, 201, 8001)] == [
        0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.8 / 512]
    assert p_selection(0.8, 100, 1000) == 0.8 / 16  # 100/1000 of the way = iteration 1000
    assert p_selection(0.8, 100, 1000, rescale=False) == 0.8 / 4
    assert window_size(0.8, 8, 8) == (7, 7)  # round(sqrt(0.8 * 64))
    assert window_size(0.001, 8, 8) == (1, 1)
    assert window_size(0.001, 8, 8, smallest=3, odd=True) == (3, 3)
    assert window_size(0.1, 32, 32, smallest=3, odd=True) == (11, 11)  # 10 -> odd
    assert window_size(0.5, 1, 12) == (1, 6)  # vectors: a segment of p * D features
    pattern = l2_pattern(5, 5)
    assert torch.isclose(pattern.norm(), torch.tensor(1.0))
    assert torch.all(pattern[:2] > 0) and torch.all(pattern[2:] < 0)
    assert pattern[0, 2] > pattern[0, 0]  # the ring around the centre weighs most
    assert torch.equal(l2_pattern(5, 5, transpose=True), pattern.T)
    third = torch.tensor([[0.25, 1.25, 0.25]]) / torch.tensor([0.25, 1.25, 0.25]).norm()
    assert torch.allclose(l2_pattern(3, 3)[0] / l2_pattern(3, 3)[0].norm(), third[0])


def test_bad_configuration_is_a_clear_error(trained_model, test_batch, make_mlp):
    x, y = test_batch
    with pytest.raises(ConfigError, match="supports the linf, l2"):
        Square()(trained_model, x, y, ThreatModel(norm="l1", eps=1.0))
    with pytest.raises(ConfigError, match="needs white-box or score access"):
        Square()(trained_model, x, y, ThreatModel(eps=0.1, knowledge="decision"))
    for bad in ({"n_queries": 0}, {"p_init": 0.0}, {"p_init": 1.5}, {"restarts": 0}):
        with pytest.raises(ConfigError):
            Square(**bad)
    model = rampart.Classifier(nn.Sequential(nn.Flatten(), make_mlp()))
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        Square(n_queries=5)(model, torch.rand(2, 1, 1, 3, 4), torch.zeros(2, dtype=torch.long),
                            ThreatModel(eps=0.1))
