import json

import pytest

from rampart import ThreatModel
from rampart.errors import ConfigError, RampartError


def test_defaults_and_describe():
    t = ThreatModel(eps=0.3)
    assert (t.norm, t.eps, t.targeted, t.knowledge, t.query_budget) == (
        "linf", 0.3, False, "white-box", None)
    assert t.describe() == "linf eps=0.3 untargeted white-box"
    assert t.single_eps == 0.3 and not t.is_targeted


@pytest.mark.parametrize("alias,norm", [("inf", "linf"), ("Linf", "linf"), ("2", "l2"),
                                        (2, "l2"), ("L1", "l1")])
def test_norm_aliases(alias, norm):
    assert ThreatModel(norm=alias, eps=1).norm == norm


def test_eps_list_and_at():
    t = ThreatModel(norm="l2", eps=[0.5, 1, 2])
    assert t.eps_values == [0.5, 1.0, 2.0]
    with pytest.raises(ConfigError, match="3 eps values"):
        _ = t.single_eps
    one = t.at(1.0)
    assert one.eps == 1.0 and one.norm == "l2"
    with pytest.raises(ConfigError, match="eps"):
        t.at(-1)


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"eps": -0.1}, "eps must be finite and >= 0"),
        ({"eps": float("nan")}, "eps must be finite"),
        ({"eps": []}, "at least one eps"),
        ({"eps": "big"}, "eps must be a number"),
        ({}, "eps: required"),
        ({"eps": 0.1, "norm": "l3"}, "unknown norm 'l3'"),
        ({"eps": 0.1, "targeted": True}, "say which targets"),
        ({"eps": 0.1, "targeted": "sideways"}, "unknown target mode"),
        ({"eps": 0.1, "targeted": [1, -2]}, ">= 0"),
        ({"eps": 0.1, "knowledge": "telepathy"}, "white-box, score, decision, transfer"),
        ({"eps": 0.1, "query_budget": 0}, "query_budget must be at least 1"),
        ({"eps": 0.1, "epsilon": 0.2}, "unknown field"),
    ],
)
def test_invalid_threats_say_what_is_wrong(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        ThreatModel(**kwargs)
    assert isinstance(info.value, RampartError)
    assert fragment in str(info.value)


@pytest.mark.parametrize("targeted", [False, "random", "least-likely", 3, [1, 2, 0]])
def test_yaml_and_json_round_trip(targeted, tmp_path):
    t = ThreatModel(norm="l1", eps=[1.0, 2.0], targeted=targeted, knowledge="score",
                    query_budget=500)
    assert ThreatModel.from_yaml(t.to_yaml()) == t
    assert ThreatModel.from_json(t.to_json()) == t
    path = tmp_path / "threat.yaml"
    path.write_text(t.to_yaml())
    assert ThreatModel.from_yaml(str(path)) == t
    assert ThreatModel.from_yaml(path) == t
    assert json.loads(t.to_json())["norm"] == "l1"


def test_targeted_words():
    assert ThreatModel(eps=1, targeted="none").targeted is False
    assert ThreatModel(eps=1, targeted="least_likely").targeted == "least-likely"
    assert ThreatModel(eps=1, targeted="7").targeted == 7


def test_bad_files_and_text(tmp_path):
    with pytest.raises(ConfigError, match="no threat model file"):
        ThreatModel.from_yaml(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="mapping"):
        ThreatModel.from_yaml("- just\n- a list\n")
    with pytest.raises(ConfigError, match="JSON is invalid"):
        ThreatModel.from_json("{not json")
