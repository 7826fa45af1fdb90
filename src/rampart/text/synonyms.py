"""Word-level synonym substitution from WordNet (as in TextFooler / PWWS, without downloads).

A word's candidates are the other single-word lemmas of its WordNet synsets. Without a
part-of-speech tagger (NLTK's needs a download, which rampart never does) the part of speech
is guessed from WordNet itself: by default only synsets of the word's *dominant* part of
speech are used, the one whose senses are most frequent in WordNet's sense-tagged corpus
(``cntlist.rev``), so "good" gives adjectives ("beneficial", "respectable"), not nouns.
Inflections are carried over: by rule ("loved" -> "enjoyed", "movies" -> "films"), or from
WordNet's exception lists where they list the form ("halted" -> "stopped", "geese"); where
neither is safe ("was", a synonym like "run" that has no "-ed" form, "visit" or "admit"
whose doubling depends on stress) the candidate is left out rather than misspelt. Case is
preserved.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rampart.errors import ConfigError
from rampart.text.base import Transformation
from rampart.text.tokens import Tokens
from rampart.text.wordnet import load_wordnet

POS_CHOICES = ("dominant", "all", "n", "v", "a", "r")
_SIBILANT_ENDINGS = ("s", "x", "z", "ch", "sh")
_VOWELS = frozenset("aeiou")


def match_case(word: str, like: str) -> str:
    """``word`` written in the case pattern of ``like`` (UPPER, Title or lower)."""
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def inflection(word: str, base: str, pos: str) -> str | None:
    """Which regular suffix turns ``base`` into ``word``: "" (none), "s", "ed" or "ing";
    None when the form is not a regular inflection we can reproduce."""
    if word == base:
        return ""
    if pos == "n":
        return "s"  # WordNet reduces nouns only from their plural
    if pos == "v":
        for suffix in ("ing", "ed", "s"):
            if word.endswith(suffix):
                return suffix
    return None


def needs_doubling(base: str) -> bool | None:
    """Whether -ed / -ing may double ``base``'s final consonant (stop -> stopped): True for a
    one-syllable consonant-vowel-consonant ending, None when it depends on stress (visit ->
    visited, admit -> admitted), False otherwise."""
    if len(base) < 3 or base[-1] in _VOWELS or base[-1] in "wxy":
        return False
    if base[-2] not in _VOWELS or base[-3] in _VOWELS:
        return False
    return True if sum(c in _VOWELS for c in base) == 1 else None


def inflect(base: str, suffix: str) -> str:
    """The regular English ``suffix`` form of ``base`` ("s", "ed", "ing" or "")."""
    if not suffix:
        return base
    consonant_y = base.endswith("y") and len(base) > 1 and base[-2] not in _VOWELS
    if suffix == "s":
        if base.endswith(_SIBILANT_ENDINGS):
            return base + "es"
        return base[:-1] + "ies" if consonant_y else base + "s"
    if needs_doubling(base):
        base += base[-1]
    if suffix == "ed":
        if base.endswith("e"):
            return base + "d"
        return base[:-1] + "ied" if consonant_y else base + "ed"
    # "ing": drop a silent final e (make -> making), keep ee / ie / ye (see -> seeing).
    if base.endswith("e") and not base.endswith(("ee", "ie", "ye")) and len(base) > 2:
        return base[:-1] + "ing"
    return base + "ing"


def _simple_pos(pos: str) -> str:
    return "a" if pos == "s" else pos


class WordNetSynonyms(Transformation):
    """Replaces a word by its WordNet synonyms (single words only, case preserved).

    Args:
        max_candidates: the most synonyms proposed per word (most frequent senses first).
        pos: "dominant" (synsets of the word's most frequent part of speech in WordNet),
            "all" (every synset), or one of "n", "v", "a", "r" (that part of speech only).
        max_senses: use only the word's first ``max_senses`` senses of that part of speech
            (WordNet lists the most frequent first); rare senses give odd substitutes
            ("loved" -> "bedded"). None: all senses.
        wordnet_dir: WordNet's dict directory (default: ``RAMPART_WORDNET_DIR`` or Debian's
            ``/usr/share/wordnet``; see ``rampart.text.wordnet``).

    Loading WordNet (about a second) happens on first use, not at construction, and raises
    ``WordNetUnavailableError`` naming the install step when it is missing.
    """

    name = "wordnet-synonyms"

    def __init__(
        self,
        max_candidates: int = 30,
        *,
        pos: str = "dominant",
        max_senses: int | None = None,
        wordnet_dir: str | Path | None = None,
    ) -> None:
        if int(max_candidates) < 1:
            raise ConfigError(f"max_candidates must be at least 1, got {max_candidates}")
        if pos not in POS_CHOICES:
            raise ConfigError(f"unknown pos {pos!r}; choose one of {', '.join(POS_CHOICES)}")
        if max_senses is not None and int(max_senses) < 1:
            raise ConfigError(f"max_senses must be at least 1 (or None), got {max_senses}")
        self.max_candidates = int(max_candidates)
        self.pos = pos
        self.max_senses = None if max_senses is None else int(max_senses)
        self.wordnet_dir = None if wordnet_dir is None else str(wordnet_dir)
        self._cache: dict[str, tuple[str, ...]] = {}
        self._wordnet: Any = None
        self._listed_forms: dict[str, dict[str, list[str]]] | None = None

    @property
    def wordnet(self) -> Any:
        """The NLTK WordNet reader (loaded on first use)."""
        if self._wordnet is None:
            self._wordnet = load_wordnet(self.wordnet_dir)
        return self._wordnet

    def candidates(self, tokens: Tokens, index: int, rng: random.Random) -> list[str]:
        word = tokens.words[index]
        return [match_case(s, word) for s in self.synonyms(word)]

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Lower-case synonyms of ``word`` (cached), most frequent senses first."""
        key = word.lower()
        if key not in self._cache:
            self._cache[key] = self._lookup(key)
        return self._cache[key]

    def _senses(self, word: str) -> list[tuple[Any, str, int]]:
        """(synset, the lemma of ``word`` in it, its tagged-sense count) for each sense."""
        wn = self.wordnet
        senses = []
        for synset in wn.synsets(word):
            pos = _simple_pos(synset.pos())
            forms = {word, wn.morphy(word, pos)}
            for lemma in synset.lemmas():
                if lemma.name().lower() in forms:
                    senses.append((synset, lemma.name().lower(), lemma.count()))
                    break
        return senses

    def _lookup(self, word: str) -> tuple[str, ...]:
        if not word.isalpha():
            return ()
        senses = self._senses(word)
        if not senses:
            return ()
        if self.pos == "dominant":
            totals: dict[str, int] = {}
            for synset, _, count in senses:
                pos = _simple_pos(synset.pos())
                totals[pos] = totals.get(pos, 0) + count
            # Most tagged occurrences; max() breaks ties by the first part of speech listed.
            keep = {max(totals, key=totals.__getitem__)}
        elif self.pos == "all":
            keep = {"n", "v", "a", "r"}
        else:
            keep = {self.pos}
        senses = [sense for sense in senses if _simple_pos(sense[0].pos()) in keep]
        out: dict[str, None] = {}
        for synset, base, _ in senses[: self.max_senses]:
            pos = _simple_pos(synset.pos())
            suffix = inflection(word, base, pos)
            if suffix is None or (suffix == "s" and pos == "v" and self._irregular(word, base)):
                continue  # "was" is a past form of "be", not a third-person "-s"
            for lemma in synset.lemmas():
                name = lemma.name().lower()
                if name == base or not self._single_word(name):
                    continue
                form = self._inflect(name, suffix, pos)
                if form is not None and form != word:
                    out.setdefault(form, None)
                if len(out) >= self.max_candidates:
                    return tuple(out)
        return tuple(out)

    @staticmethod
    def _single_word(name: str) -> bool:
        return "_" not in name and Tokens.from_text(name).words == (name,)

    def _irregular(self, word: str, base: str) -> bool:
        """``word`` is listed as an irregular verb form of ``base`` in WordNet."""
        return base in self.wordnet._exception_map["v"].get(word, ())

    def _inflect(self, base: str, suffix: str, pos: str) -> str | None:
        """``base`` with ``suffix``: the form WordNet's exception lists give when they list
        one (ran, geese, stopped), else the regular one; None when neither is safe."""
        if not suffix:
            return base
        if self._listed_forms is None:
            self._listed_forms = {}
            for p in ("n", "v"):
                forms: dict[str, list[str]] = {}
                for form, bases in self.wordnet._exception_map[p].items():
                    for b in bases:
                        if b != form:  # NLTK also maps some base forms to themselves
                            forms.setdefault(b, []).append(form)
                self._listed_forms[p] = forms
        listed = self._listed_forms.get(pos, {}).get(base)
        if listed:
            matching = sorted(f for f in listed if f.endswith(suffix))
            return matching[0] if matching else None  # "ran" has no "-ed" form: skip "run"
        if suffix == "s" and base.endswith("o"):
            return None  # echoes or photos: English has both
        if suffix in ("ed", "ing") and needs_doubling(base) is None:
            return None  # visited or admitted depends on stress
        return inflect(base, suffix)
