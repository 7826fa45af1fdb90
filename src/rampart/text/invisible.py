"""Invisible characters: zero-width characters inserted inside words.

The text renders exactly as before, but a model that tokenises on code points sees a
different (often unknown) word. Only insertions happen: removing the inserted characters
gives the original word back (Boucher et al., "Bad Characters", 2022).
"""

from __future__ import annotations

from rampart.errors import ConfigError
from rampart.text.edits import CharTransformation

ZERO_WIDTH_SPACE = "\u200b"
ZERO_WIDTH_NON_JOINER = "\u200c"
ZERO_WIDTH_JOINER = "\u200d"
INVISIBLE = (ZERO_WIDTH_SPACE, ZERO_WIDTH_NON_JOINER, ZERO_WIDTH_JOINER)


class InvisibleCharacters(CharTransformation):
    """Insert zero-width characters (ZWSP, ZWNJ, ZWJ by default) between a word's letters.

    Args:
        characters: the invisible characters to insert.
        max_edits: the most characters inserted into one word.
        max_candidates, min_length: see ``CharTransformation``.
    """

    name = "invisible"

    def __init__(
        self,
        characters: tuple[str, ...] | list[str] = INVISIBLE,
        max_edits: int = 1,
        max_candidates: int = 32,
        min_length: int = 2,
    ) -> None:
        super().__init__(max_edits, max_candidates, min_length)
        if not characters or any(len(c) != 1 for c in characters):
            raise ConfigError("characters must be a non-empty list of single characters")
        self.characters = tuple(characters)

    def single_edits(self, word: str) -> list[str]:
        return [
            word[:i] + c + word[i:] for i in range(1, len(word)) for c in self.characters
        ]
