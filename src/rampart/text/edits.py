"""What the character-level transformations share: a word-edit budget and candidate sampling.

A ``CharTransformation`` only says how to make every single edit of a word; this base class
composes up to ``max_edits`` of them per word and samples at most ``max_candidates``
candidates (with the search's seeded generator), so every character attack has the same
knobs and the same budget semantics.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections.abc import Iterable, Sequence

from rampart.errors import ConfigError
from rampart.text.base import Transformation
from rampart.text.tokens import Tokens


def check_choices(values: Sequence[str], known: Iterable[str], what: str) -> tuple[str, ...]:
    """``values`` as a tuple, or a ``ConfigError`` naming the unknown ones and the choices."""
    known = list(known)
    unknown = sorted(set(values) - set(known))
    if unknown or not values:
        raise ConfigError(
            f"unknown {what} {unknown or '(none given)'}; choose from {', '.join(known)}"
        )
    return tuple(values)


class CharTransformation(Transformation):
    """A transformation made of single-character edits, at most ``max_edits`` per word.

    Args:
        max_edits: the most edits one candidate may apply to a word.
        max_candidates: the most candidates proposed for one word (sampled when more exist).
        min_length: words shorter than this are left alone.
    """

    def __init__(self, max_edits: int = 1, max_candidates: int = 32, min_length: int = 2) -> None:
        if int(max_edits) < 1:
            raise ConfigError(f"max_edits must be at least 1, got {max_edits}")
        if int(max_candidates) < 1:
            raise ConfigError(f"max_candidates must be at least 1, got {max_candidates}")
        self.max_edits = int(max_edits)
        self.max_candidates = int(max_candidates)
        self.min_length = int(min_length)

    @abstractmethod
    def single_edits(self, word: str) -> list[str]:
        """Every word one edit away from ``word`` (in a deterministic order)."""

    def candidates(self, tokens: Tokens, index: int, rng: random.Random) -> list[str]:
        word = tokens.words[index]
        if len(word) < self.min_length:
            return []
        found: dict[str, None] = dict.fromkeys(self.single_edits(word))
        frontier = list(found)
        for _ in range(1, self.max_edits):
            # One more edit on a sample of the words found so far.
            sample = rng.sample(frontier, min(len(frontier), self.max_candidates))
            frontier = []
            for w in sample:
                options = self.single_edits(w)
                if options:
                    nxt = rng.choice(options)
                    if nxt not in found:
                        found[nxt] = None
                        frontier.append(nxt)
        found.pop(word, None)
        out = [w for w in found if w]
        if len(out) > self.max_candidates:
            out = rng.sample(out, self.max_candidates)
        return out
