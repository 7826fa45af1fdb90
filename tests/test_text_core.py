"""The text interface: Tokens, TextClassifier input checks and query counts, WordAttack's
greedy search on a transparent toy model."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rampart.errors import ConfigError, ModelOutputError, QueryBudgetError, TextInputError
from rampart.text import (
    CompositeTransformation,
    Constraint,
    TextClassifier,
    Tokens,
    Transformation,
    WordAttack,
)

# --------------------------------------------------------------------------- tokens


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokens_round_trip(text: str) -> None:
    tokens = Tokens.from_text(text)
    assert tokens.join() == text
    assert len(tokens.separators) == len(tokens.words) + 1
    assert all(tokens.words)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.data())
def test_tokens_replace_and_delete(text: str, data: st.DataObject) -> None:
    tokens = Tokens.from_text(text)
    if not tokens.words:
        return
    i = data.draw(st.integers(0, len(tokens) - 1))
    replaced = tokens.replace(i, "XYZ")
    assert replaced.words[i] == "XYZ"
    assert replaced.separators == tokens.separators
    assert [w for k, w in enumerate(replaced.words) if k != i] == \
        [w for k, w in enumerate(tokens.words) if k != i]
    deleted = tokens.delete(i)
    assert deleted.words == tokens.words[:i] + tokens.words[i + 1 :]
    assert Tokens.from_text(deleted.join()).join() == deleted.join()


def test_tokens_words_and_separators() -> None:
    tokens = Tokens.from_text("  It's a well-made film, isn't it?")
    assert tokens.words == ("It's", "a", "well-made", "film", "isn't", "it")
    assert tokens.separators == ("  ", " ", " ", " ", ", ", " ", "?")
    # Zero-width and bidi characters stay inside the word they decorate.
    assert Tokens.from_text("gr\u200beat \u202etac\u202c").words == ("gr\u200beat",
                                                                     "\u202etac\u202c")
    assert Tokens.from_text("").words == () and Tokens.from_text("").join() == ""
    with pytest.raises(IndexError):
        tokens.replace(6, "x")


# --------------------------------------------------------------------------- classifier


def count_upper(texts: list[str]) -> np.ndarray:
    """Class 1 wins when a text has more than one capital letter."""
    return np.array([[1.5, float(sum(c.isupper() for c in t))] for t in texts])


def test_classifier_batches_and_counts() -> None:
    calls: list[int] = []

    def fn(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return count_upper(texts)

    model = TextClassifier(fn, 2, batch_size=3)
    logits = model.logits(["a", "AB", "c", "DEF", "e", "f", "g"])
    assert logits.shape == (7, 2) and logits.dtype == torch.float32
    assert calls == [3, 3, 1]
    assert model.queries == 7
    assert model.predict(["xx", "XX"]).tolist() == [0, 1]
    assert model.queries == 9
    assert model.calls == 3 + 1  # one call per batch of at most 3 texts
    model.reset_queries()
    assert model.queries == 0 and model.calls == 0


def test_classifier_decodes_utf8_bytes() -> None:
    seen: list[str] = []

    def fn(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return count_upper(texts)

    TextClassifier(fn, 2).logits(["plain", "café".encode()])
    assert seen == ["plain", "café"]


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "no texts"),
        (["ok", ""], "text 1 is empty"),
        (["ok", "  \n"], "text 1 is only whitespace"),
        (["ok", 3], "text 1 is a int"),
        ("just a string", "single string"),
        ([b"ok", b"caf\xe9 au lait"], "text 1 is not valid UTF-8: byte 0xe9 at byte offset 3"),
    ],
)
def test_classifier_input_errors(texts: object, message: str) -> None:
    model = TextClassifier(count_upper, 2)
    with pytest.raises(TextInputError, match=message):
        model.logits(texts)  # type: ignore[arg-type]
    assert model.queries == 0


def test_classifier_output_and_config_errors() -> None:
    with pytest.raises(ModelOutputError, match=r"shape \(2, 3\).*expected \(2, 2\)"):
        TextClassifier(lambda t: np.zeros((len(t), 3)), 2).logits(["a", "b"])
    with pytest.raises(ModelOutputError, match="NaN"):
        TextClassifier(lambda t: np.full((len(t), 2), np.nan), 2).logits(["a"])
    with pytest.raises(ModelOutputError, match="not an array"):
        TextClassifier(lambda t: object(), 2).logits(["a"])
    with pytest.raises(ConfigError, match="num_classes"):
        TextClassifier(count_upper, 1)
    with pytest.raises(ConfigError, match="one per class"):
        TextClassifier(count_upper, 2, labels=["a"])
    budget = TextClassifier(count_upper, 2, max_queries=3)
    budget.logits(["a", "b"])
    with pytest.raises(QueryBudgetError, match="budget of 3"):
        budget.logits(["c", "d"])


# --------------------------------------------------------------------------- attack


class Upper(Transformation):
    name = "upper"

    def candidates(self, tokens: Tokens, index: int, rng: random.Random) -> list[str]:
        word = tokens.words[index]
        return [word.upper(), word.title()]


class NoFirstWord(Constraint):
    name = "no-first-word"

    def can_modify(self, original: Tokens, index: int) -> bool:
        return index != 0

    def allows(self, original: Tokens, proposed: Tokens, modified: frozenset[int]) -> bool:
        return 0 not in modified


class MaxWords(Constraint):
    name = "max-words"

    def __init__(self, n: int) -> None:
        self.n = n

    def allows(self, original: Tokens, proposed: Tokens, modified: frozenset[int]) -> bool:
        return len(modified) <= self.n


def test_attack_flips_with_exact_query_accounting() -> None:
    model = TextClassifier(count_upper, 2)
    texts = ["hello there world", "ab", "ALREADY WRONG"]
    result = WordAttack(Upper())(model, texts, [0, 0, 0])
    assert result.success.tolist() == [True, True, False]
    assert result.skipped.tolist() == [False, False, True]
    # Every text the model saw is counted once, on the text it was spent for.
    assert int(result.queries.sum()) == model.queries
    # "hello there world": 1 clean + 3 deletions + 2 candidates for the first ranked word.
    assert result.queries.tolist() == [6, 3, 1]
    assert result.adversarial[0] == "HELLO there world"
    assert result.adversarial[2] == texts[2]
    assert result.modified_words.tolist() == [1, 1, 0]
    assert result.modification_rate[0] == pytest.approx(1 / 3)
    assert result.adv_predictions.tolist() == [1, 1, 1]  # the skipped one was wrong already
    summary = result.summary()
    assert summary["success_rate"] == 1.0 and summary["attacked"] == 2
    assert result.examples(1) == [("hello there world", "HELLO there world")]


def test_attack_respects_constraints_and_budget() -> None:
    model = TextClassifier(count_upper, 2)
    # Only word 0 could flip it alone ("HELLO" has 5 capitals); without it the attack fails.
    result = WordAttack(Upper(), [NoFirstWord(), MaxWords(0)])(model, ["hello b c"], [0])
    assert not result.success[0] and result.adversarial == ["hello b c"]
    result = WordAttack(Upper(), [NoFirstWord()])(model, ["hello b c"], [0])
    assert result.success[0] and result.adversarial[0].startswith("hello")
    for budget in (1, 2, 4, 5):
        model.reset_queries()
        res = WordAttack(Upper(), max_queries=budget)(model, ["one two three four"], [0])
        assert int(res.queries[0]) <= budget
        assert model.queries == int(res.queries[0])


def test_attack_is_seeded_and_combines_transformations() -> None:
    model = TextClassifier(count_upper, 2)
    attack = WordAttack([Upper(), Upper()], seed=3)
    assert isinstance(attack.transformation, CompositeTransformation)
    a = attack(model, ["abc def", "ghi jkl"], [0, 0])
    b = attack(model, ["abc def", "ghi jkl"], [0, 0])
    assert a.adversarial == b.adversarial


class RandomCapital(Transformation):
    """Two of the word's one-capital variants, drawn with the search's random generator."""

    name = "random-capital"

    def candidates(self, tokens: Tokens, index: int, rng: random.Random) -> list[str]:
        word = tokens.words[index]
        variants = [word[:i] + word[i].upper() + word[i + 1:] for i in range(len(word))]
        return rng.sample(variants, min(2, len(variants)))


ORDER_TEXTS = ["ordinary lowercase words here", "another sentence of plain words",
               "quiet evenings with long novels", "seven bright lanterns glowing",
               "rivers wander through valleys slowly", "gentle breezes across meadows"]


def test_results_do_not_depend_on_the_order_or_company_of_the_texts() -> None:
    """Each text's random generator comes from the seed and the text, not its position."""
    attack = WordAttack(RandomCapital(), seed=5)

    def adversarial(texts: list[str]) -> dict[str, str]:
        result = attack(TextClassifier(count_upper, 2), texts, [0] * len(texts))
        assert bool(result.success.all())
        return dict(zip(result.original, result.adversarial, strict=True))

    everything = adversarial(ORDER_TEXTS)
    assert adversarial(ORDER_TEXTS[::-1]) == everything
    assert adversarial(ORDER_TEXTS[2:]) == {t: everything[t] for t in ORDER_TEXTS[2:]}
    assert adversarial([ORDER_TEXTS[3]]) == {ORDER_TEXTS[3]: everything[ORDER_TEXTS[3]]}
    # The seed still matters.
    other = WordAttack(RandomCapital(), seed=6)(TextClassifier(count_upper, 2), ORDER_TEXTS,
                                                [0] * len(ORDER_TEXTS))
    assert other.adversarial != [everything[t] for t in ORDER_TEXTS]


def test_text_random_generator_is_the_same_in_every_process() -> None:
    import os
    import subprocess
    import sys

    from rampart.text.attack import text_rng

    code = ("from rampart.text.attack import text_rng; "
            "print(text_rng(7, 'caf\\u00e9 noir').random())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=env, timeout=120).stdout
    assert float(out) == text_rng(7, "caf\u00e9 noir").random()
    assert text_rng(7, "a").random() != text_rng(7, "b").random()
    assert text_rng(7, "a").random() != text_rng(8, "a").random()


def test_lockstep_batches_do_not_change_results() -> None:
    texts = ["hello there world", "ab", "ALREADY WRONG", "one two three four five", "x y z"]
    results = []
    for batch_size in (1, 2, 64):
        model = TextClassifier(count_upper, 2, batch_size=3)
        result = WordAttack(Upper(), max_queries=9, batch_size=batch_size)(model, texts, [0] * 5)
        assert int(result.queries.sum()) == model.queries
        results.append(result)
    for other in results[1:]:
        assert other.adversarial == results[0].adversarial
        assert torch.equal(other.queries, results[0].queries)
        assert torch.equal(other.success, results[0].success)


def test_attack_errors() -> None:
    model = TextClassifier(count_upper, 2)
    with pytest.raises(TextInputError, match="2 labels for 1 texts"):
        WordAttack(Upper())(model, ["a"], [0, 1])
    with pytest.raises(TextInputError, match=r"labels must lie in \[0, 1\]"):
        WordAttack(Upper())(model, ["a"], [2])
    with pytest.raises(TextInputError, match="text 0 is empty"):
        WordAttack(Upper())(model, [""], [0])
    with pytest.raises(ConfigError, match="TextClassifier"):
        WordAttack(Upper())(count_upper, ["a"], [0])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown search"):
        WordAttack(Upper(), search="beam")
    with pytest.raises(ConfigError, match="max_queries"):
        WordAttack(Upper(), max_queries=0)
    with pytest.raises(ConfigError, match="batch_size"):
        WordAttack(Upper(), batch_size=0)


def test_model_failures_are_target_errors_with_partial_results() -> None:
    from rampart.errors import PartialResultError, TargetError

    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(TargetError, match="failed on a batch of 1 texts: RuntimeError: CUDA"):
        TextClassifier(broken, 2).logits(["a"])
    # A global budget that runs out part-way keeps the texts already attacked.
    model = TextClassifier(count_upper, 2, max_queries=12)
    with pytest.raises(PartialResultError, match="after 1 of 3 texts") as info:
        WordAttack(Upper(), batch_size=1)(model, ["hello there world", "one two three four",
                                                  "x y"], [0] * 3)
    partial = info.value.result
    assert info.value.done == 1 and len(partial) == 1
    assert partial.success.tolist() == [True] and partial.queries.tolist() == [6]
