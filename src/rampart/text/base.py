"""The two pieces a text attack is made of: transformations and constraints.

A ``Transformation`` proposes replacements for one word (character edits, homoglyphs,
invisible characters, synonyms, ...); a ``Constraint`` decides whether a proposed text is
still an acceptable perturbation of the original (modification rate, stopwords, ...).
The search (``rampart.text.search``) combines them.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod

from rampart.text.tokens import Tokens


class Transformation(ABC):
    """Proposes replacements for one word (char edits, homoglyphs, synonyms, ...)."""

    name: str = "transformation"

    @abstractmethod
    def candidates(self, tokens: Tokens, index: int, rng: random.Random) -> list[str]:
        """Replacement strings for ``tokens.words[index]``, each different from it."""

    def config(self) -> dict[str, object]:
        """The transformation's settings, for reports."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Constraint(ABC):
    """Decides whether a proposed text is still an acceptable perturbation of the original."""

    name: str = "constraint"

    def can_modify(self, original: Tokens, index: int) -> bool:
        """Cheap pre-filter: may word ``index`` of ``original`` be changed at all?"""
        return True

    @abstractmethod
    def allows(self, original: Tokens, proposed: Tokens, modified: frozenset[int]) -> bool:
        """Whether ``proposed`` (words ``modified`` changed) is acceptable."""

    def allows_batch(
        self, original: Tokens, proposals: list[Tokens], modified: list[frozenset[int]]
    ) -> list[bool]:
        """``allows`` for many proposals at once (override to batch expensive checks)."""
        return [self.allows(original, p, m) for p, m in zip(proposals, modified, strict=True)]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class CompositeTransformation(Transformation):
    """The union of several transformations' candidates (duplicates dropped, order kept)."""

    def __init__(self, transformations: list[Transformation]) -> None:
        self.transformations = list(transformations)
        self.name = "+".join(t.name for t in self.transformations)

    def candidates(self, tokens: Tokens, index: int, rng: random.Random) -> list[str]:
        seen: dict[str, None] = {}
        for transformation in self.transformations:
            for word in transformation.candidates(tokens, index, rng):
                seen.setdefault(word, None)
        return list(seen)
