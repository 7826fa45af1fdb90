"""Character and Unicode transformations, the confusables table, the sanitiser, the detector
and the report's visible escaping."""

from __future__ import annotations

import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rampart.errors import ConfigError
from rampart.text import Tokens
from rampart.text.bidi import BIDI_CONTROLS, PDF, RLO, BidiReorder, encode_segment, visual_order
from rampart.text.char_edits import KEYBOARD, CharEdits
from rampart.text.confusables import confusable_pairs, lookalikes, to_ascii
from rampart.text.constraints import levenshtein  # checked against the definition elsewhere
from rampart.text.detector import SanitiserDetector, Unflagged, evaluate_text_detector
from rampart.text.display import changes, visible
from rampart.text.homoglyphs import Homoglyphs
from rampart.text.invisible import INVISIBLE, InvisibleCharacters
from rampart.text.sanitize import Sanitiser

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2,
                max_size=12)


def cands(transformation, word: str, seed: int = 0) -> list[str]:  # noqa: ANN001
    return transformation.candidates(Tokens.from_text(word), 0, random.Random(seed))


# --------------------------------------------------------------------------- the table


def test_confusables_table_is_consistent() -> None:
    pairs = confusable_pairs()
    assert len(pairs) >= 200
    for ascii_char, lookalike, _ in pairs:
        assert ascii_char.isascii() and ascii_char.isalnum()
        assert not lookalike.isascii() and len(lookalike) == 1
        unicodedata.name(lookalike)  # a real, named code point
    # Fullwidth and mathematical letters fold back to their ASCII letter under NFKC.
    for ascii_char, lookalike, script in pairs:
        if script.startswith(("fullwidth", "math")):
            assert unicodedata.normalize("NFKC", lookalike) == ascii_char
    assert to_ascii()["\u0430"] == "a"  # Cyrillic a
    assert "\u0435" in lookalikes()["e"]


# --------------------------------------------------------------------------- transformations


@settings(max_examples=60, deadline=None)
@given(WORDS, st.integers(1, 3))
def test_char_edits_are_small_typos(word: str, max_edits: int) -> None:
    out = cands(CharEdits(max_edits=max_edits, max_candidates=50), word)
    assert word not in out and len(out) <= 50
    for w in out:
        # A swap is two substitutions in Levenshtein terms.
        assert 1 <= levenshtein(word, w) <= 2 * max_edits
        assert w.isascii()


def test_char_edits_operations() -> None:
    edits = CharEdits(operations=["swap"]).single_edits("abc")
    assert edits == ["bac", "acb"]
    assert CharEdits(operations=["delete"]).single_edits("abc") == ["bc", "ac", "ab"]
    subs = CharEdits(operations=["substitute"]).single_edits("Go")
    assert all(s[0] in KEYBOARD["g"].upper() or s[1] in KEYBOARD["o"] for s in subs)
    assert "Fo" in subs and "Gi" in subs  # case kept, neighbours used
    assert cands(CharEdits(), "ab") == []  # shorter than min_length
    with pytest.raises(ConfigError, match="unknown character operations"):
        CharEdits(operations=["explode"])
    with pytest.raises(ConfigError, match="max_edits"):
        CharEdits(max_edits=0)


@settings(max_examples=60, deadline=None)
@given(WORDS, st.integers(1, 3))
def test_invisible_only_inserts(word: str, max_edits: int) -> None:
    out = cands(InvisibleCharacters(max_edits=max_edits), word)
    assert out
    for w in out:
        inserted = [c for c in w if c in INVISIBLE]
        assert 1 <= len(inserted) <= max_edits
        assert "".join(c for c in w if c not in INVISIBLE) == word
        assert w[0] == word[0] and w[-1] == word[-1]  # inside the word
        assert Sanitiser()(w) == word


@settings(max_examples=60, deadline=None)
@given(WORDS, st.integers(1, 3))
def test_homoglyphs_render_similar(word: str, max_edits: int) -> None:
    table = lookalikes()
    out = cands(Homoglyphs(max_edits=max_edits), word)
    for w in out:
        assert len(w) == len(word)
        changed = [(a, b) for a, b in zip(word, w, strict=True) if a != b]
        assert 1 <= len(changed) <= max_edits
        assert all(b in table[a] for a, b in changed)
        assert Sanitiser()(w) == word


def test_homoglyph_scripts() -> None:
    cyr = cands(Homoglyphs(scripts=["cyrillic"]), "ace")
    assert cyr and all(unicodedata.name(c).startswith("CYRILLIC") for w in cyr for c in w
                       if not c.isascii())
    full = cands(Homoglyphs(scripts=["fullwidth"]), "ace")
    assert all(unicodedata.normalize("NFKC", w) == "ace" for w in full)
    with pytest.raises(ConfigError, match="unknown confusable scripts"):
        Homoglyphs(scripts=["klingon"])


@settings(max_examples=60, deadline=None)
@given(WORDS, st.integers(1, 2))
def test_bidi_displays_the_same(word: str, max_edits: int) -> None:
    out = cands(BidiReorder(styles=["override", "isolate", "wrap"], max_edits=max_edits), word)
    for w in out:
        assert w != word and any(c in BIDI_CONTROLS for c in w)
        # Stripping the controls and reversing each override span restores the word ...
        assert visual_order(w) == word
        # ... while the stored (logical) characters differ from the word unless only wrapped.
        stripped = "".join(c for c in w if c not in BIDI_CONTROLS)
        assert sorted(stripped) == sorted(word)
        assert Sanitiser()(w) == word


def test_bidi_encoding() -> None:
    assert encode_segment("great", 1, 4, "override") == "g" + RLO + "aer" + PDF + "t"
    assert encode_segment("great", 0, 5, "isolate") == "\u2067\u202etaerg\u202c\u2069"
    # Nested: RLO [ b c LRO [ d e ] f ] displays reversed around the kept LRO span.
    assert visual_order("a\u202ebc\u202dde\u202cf\u202cg") == "afdecbg"
    assert visual_order("\u202eabc") == "cba"  # an unterminated span ends with the text
    # Palindromic segments are not proposed (same characters reversed).
    assert cands(BidiReorder(min_segment=2), "aa") == []
    with pytest.raises(ConfigError, match="unknown bidi styles"):
        BidiReorder(styles=["diagonal"])


# --------------------------------------------------------------------------- sanitiser


def test_sanitiser_steps() -> None:
    s = Sanitiser()
    assert s("The movie was great.") == "The movie was great."
    assert s("gr\u200beat\u2060 \ufeffday\u00ad") == "great day"
    assert s("ｆｉｎｅ 𝚐𝚘𝚘𝚍") == "fine good"
    assert s("gооd") == "good"  # Cyrillic o
    assert s("line\tone\nline two") == "line\tone\nline two"  # tab and newline kept
    mixed = Sanitiser(mixed_only=True)
    assert mixed("gооd привет") == "good привет"  # an all-Cyrillic word is left alone
    assert Sanitiser(map_confusables=False)("gооd") == "gооd"
    assert Sanitiser(normal_form=None, map_confusables=False)("ｆ") == "ｆ"
    with pytest.raises(ConfigError, match="unknown normal form"):
        Sanitiser("NFX")


def test_changed_fraction() -> None:
    s = Sanitiser()
    assert s.changed_fraction("plain text") == 0.0
    assert s.changed_fraction("gr\u200beat") == pytest.approx(1 / 6)
    assert 0 < s.changed_fraction("\u202etaerg\u202c") <= 1


def test_detector_flags_attacks_not_clean_text() -> None:
    from rampart.text.corpus import sentiment_corpus

    clean, _ = sentiment_corpus(300, seed=5)
    detector = SanitiserDetector()
    rng = random.Random(0)
    attacks = [InvisibleCharacters(), Homoglyphs(), BidiReorder()]
    adversarial = []
    for i, text in enumerate(clean[:60]):
        tokens = Tokens.from_text(text)
        index = max(range(len(tokens)), key=lambda k: len(tokens.words[k]))
        options = attacks[i % 3].candidates(tokens, index, rng)
        adversarial.append(tokens.replace(index, options[0]).join())
    report = evaluate_text_detector(detector, clean, adversarial)
    assert report.fpr == 0.0 and report.tpr == 1.0 and report.auc == 1.0
    # Ordinary typography and accented words are not flagged; counting them is opt-in.
    typographic = ["Caf\u00e9 na\u00efve\u2026 it\u2019s\u00a0great", "\u201cFine\u201d \uff01"]
    assert not detector.flag(typographic).any()
    assert SanitiserDetector(ignore_benign=False).flag(typographic).all()
    typos = [Tokens.from_text(t).replace(0, "Teh").join() for t in clean[:20]]
    assert not detector.flag(typos).any()  # plain typos are not a Unicode trick
    # Calibrating on text with legitimate fullwidth characters raises the threshold.
    noisy = [t + " ｏｋ" if i % 2 else t for i, t in enumerate(clean[:100])]
    calibrated = SanitiserDetector().calibrate(noisy, fpr=0.05)
    assert calibrated.threshold > 0
    assert float(calibrated.flag(noisy).float().mean()) <= 0.05 + 1e-6
    with pytest.raises(ConfigError, match="threshold"):
        SanitiserDetector(threshold=1.5)


def test_unflagged_constraint() -> None:
    original = Tokens.from_text("a great day")
    constraint = Unflagged(SanitiserDetector())
    proposals = [original.replace(1, "grеat"), original.replace(1, "graet")]
    assert constraint.allows_batch(original, proposals, [frozenset({1})] * 2) == [False, True]
    assert constraint.allows(original, proposals[1], frozenset({1}))


def test_visible_escapes_invisible_characters() -> None:
    assert visible("gr\u200beat \u202eab\u202c") == "gr<U+200B>eat <U+202E>ab<U+202C>"
    assert visible("tab\tok") == "tab\tok"
    listed = changes("great", "grеat")
    assert listed == ["е U+0435 CYRILLIC SMALL LETTER IE"]
    assert changes("great", "gr\u200beat") == ["<U+200B> U+200B ZERO WIDTH SPACE"]


def test_sanitised_classifier_sees_clean_text() -> None:
    import numpy as np

    from rampart.text import TextClassifier
    from rampart.text.sanitize import SanitisedClassifier

    seen: list[str] = []

    def fn(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.zeros((len(texts), 2))

    inner = TextClassifier(fn, 2, labels=["neg", "pos"])
    defended = SanitisedClassifier(inner)
    defended.logits(["gr\u200beat", "gооd", "\u202etaerg\u202c", "\u200b\u200b"])
    # A text that sanitises to nothing reaches the model unchanged instead of failing.
    assert seen == ["great", "good", "great", "\u200b\u200b"]
    assert defended.queries == 4 and inner.queries == 4
    assert defended.labels == ["neg", "pos"]
    with pytest.raises(ConfigError, match="wraps a rampart.text.TextClassifier"):
        SanitisedClassifier(fn)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_sanitiser_is_idempotent_and_leaves_nothing_to_flag(text: str) -> None:
    s = Sanitiser()
    once = s(text)
    assert s(once) == once
    assert not any(c in BIDI_CONTROLS or c in INVISIBLE for c in once)
    if once.strip():
        assert not SanitiserDetector(s).flag([once])[0]


def test_registry_names_every_attack() -> None:
    from rampart.text.registry import TRANSFORMATIONS, available, make_transformation

    for name in ("char-edits", "invisible", "homoglyphs", "bidi"):
        assert name in available()
        transformation = make_transformation(name, max_edits=2)
        assert transformation.name == name and transformation.max_edits == 2
    assert set(available()) <= set(TRANSFORMATIONS)
    with pytest.raises(ConfigError, match="unknown text attack 'teleport'"):
        make_transformation("teleport")
