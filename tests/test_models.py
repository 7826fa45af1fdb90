"""The Classifier wrapper: normalisation in the graph, class probing, outputs, boundaries."""

import numpy as np
import pytest
import torch
from torch import nn

import rampart
from rampart.errors import InputError, ModelOutputError


class Recorder(nn.Module):
    """Returns fixed logits and remembers what it was fed."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out
        self.seen: list[torch.Tensor] = []
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.out[: x.shape[0]] * self.scale


def test_mean_std_are_applied_inside_the_graph():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    model = rampart.Classifier(nn.Sequential(conv, nn.Flatten()), mean=mean, std=std)
    x = torch.rand(2, 3, 1, 1, requires_grad=True)
    manual = conv((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])
    got = model.logits(x)
    assert torch.allclose(got, manual.flatten(1))
    got.sum().backward()  # gradients reach the raw input through the normalisation
    assert x.grad is not None and torch.all(x.grad != 0)


def test_mean_std_channel_mismatch_is_explained():
    model = rampart.Classifier(nn.Flatten(), mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    with pytest.raises(InputError, match="3 channels"):
        model.predict(torch.rand(2, 1, 4, 4))
    with pytest.raises(InputError, match="std must be positive"):
        rampart.Classifier(nn.Flatten(), std=(0.0,))


def test_num_classes_probe_and_input_shape_check():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7))
    model = rampart.Classifier(net, input_shape=(3, 2, 2))
    assert model.num_classes == 7
    with pytest.raises(InputError, match=r"shape \(3, 2, 2\)"):
        model.predict(torch.rand(2, 12))
    unknown = rampart.Classifier(net)
    with pytest.raises(InputError, match="number of classes is unknown"):
        _ = unknown.num_classes
    unknown.predict(torch.rand(1, 12))
    assert unknown.num_classes == 7


def test_single_logit_is_two_classes_with_the_same_probabilities():
    z = torch.tensor([[2.0], [-1.0]])
    model = rampart.Classifier(Recorder(z))
    logits = model.predict_logits(torch.rand(2, 3))
    assert model.num_classes == 2
    assert torch.allclose(logits.softmax(1)[:, 1], torch.sigmoid(z[:, 0]))
    assert torch.equal(model.predict(torch.rand(2, 3)), torch.tensor([1, 0]))


def test_probabilities_are_refused_unless_declared():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    with pytest.raises(ModelOutputError, match="look like probabilities"):
        rampart.Classifier(Recorder(probs)).predict(torch.rand(2, 3))
    accepted = rampart.Classifier(Recorder(probs), output="probabilities")
    assert torch.allclose(accepted.predict_logits(torch.rand(2, 3)).exp(), probs)
    # Logits that happen to be in [0, 1] but do not sum to one are fine.
    rampart.Classifier(Recorder(torch.tensor([[0.9, 0.8, 0.1]]))).predict(torch.rand(1, 3))


@pytest.mark.parametrize(
    "out,fragment",
    [
        (torch.zeros(2, 3, 4), "must return \\(N, num_classes\\)"),
        ("not a tensor", "not a tensor of logits"),
    ],
)
def test_malformed_outputs(out, fragment):
    class Bad(nn.Module):
        def forward(self, x):
            return out

    with pytest.raises(ModelOutputError, match=fragment):
        rampart.Classifier(Bad()).predict(torch.rand(2, 3))


def test_model_crash_becomes_a_clear_error():
    model = rampart.Classifier(nn.Linear(5, 2))
    with pytest.raises(ModelOutputError, match=r"failed on a batch shaped \(\d+, 7\)"):
        model.predict(torch.rand(2, 7))


def test_chunking_and_kind_of_return():
    net = nn.Sequential(nn.Linear(4, 3))
    big, small = rampart.Classifier(net, batch_size=100), rampart.Classifier(net, batch_size=3)
    x = torch.rand(10, 4)
    rec = Recorder(torch.randn(10, 3))
    rampart.Classifier(rec, batch_size=4).predict(x)
    assert [s.shape[0] for s in rec.seen] == [1, 4, 4, 2]  # a 1-sample probe, then chunks
    assert torch.allclose(big.predict_logits(x), small.predict_logits(x))
    out = small.predict_logits(x.numpy())
    assert isinstance(out, np.ndarray) and out.dtype == np.float32


def test_eval_mode_during_attack_and_restored():
    class ModeSpy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)
            self.modes: list[bool] = []

        def forward(self, x):
            self.modes.append(self.training)
            return self.lin(x)

    spy = ModeSpy().train()
    model = rampart.Classifier(spy)
    rampart.attacks.PGD(steps=3)(model, torch.rand(4, 3), torch.zeros(4, dtype=torch.long),
                                 rampart.ThreatModel(eps=0.1))
    assert spy.modes and not any(spy.modes)
    assert spy.training and all(p.requires_grad for p in spy.parameters())


def test_device_follows_the_module():
    model = rampart.Classifier(nn.Linear(3, 2))
    assert model.device == torch.device("cpu")
    assert rampart.Classifier(nn.ReLU()).device == torch.device("cpu")


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"bounds": (1, 0)}, "low < high"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_classes": 1}, "at least 2"),
        ({"output": "scores"}, "logits' or 'probabilities"),
    ],
)
def test_bad_wrapper_arguments(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        rampart.Classifier(nn.Linear(3, 2), **kwargs)
    with pytest.raises(InputError, match="torch.nn.Module"):
        rampart.Classifier(lambda x: x)
