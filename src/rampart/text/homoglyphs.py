"""Homoglyphs: letters replaced by lookalikes from other scripts (Cyrillic "а" for "a").

The text looks the same to a reader, but the model sees different code points. Every
replacement comes from rampart's confusables table (``rampart.text.confusables``).
"""

from __future__ import annotations

from rampart.text.confusables import lookalikes
from rampart.text.confusables import scripts as table_scripts
from rampart.text.edits import CharTransformation, check_choices

# Scripts whose letters look most like Latin in common fonts; fullwidth and mathematical
# letters are visibly different in most fonts and undone by NFKC, so they are opt-in.
DEFAULT_SCRIPTS = ("cyrillic", "greek", "armenian", "latin-lookalike")


class Homoglyphs(CharTransformation):
    """Replace up to ``max_edits`` letters of a word by lookalikes from ``scripts``.

    Args:
        scripts: which groups of the confusables table to use (see
            ``rampart.text.confusables.scripts()``).
        max_edits, max_candidates, min_length: see ``CharTransformation``.
    """

    name = "homoglyphs"

    def __init__(
        self,
        scripts: tuple[str, ...] | list[str] = DEFAULT_SCRIPTS,
        max_edits: int = 1,
        max_candidates: int = 32,
        min_length: int = 1,
    ) -> None:
        super().__init__(max_edits, max_candidates, min_length)
        self.scripts = check_choices(scripts, table_scripts(), "confusable scripts")
        self._table = lookalikes(frozenset(self.scripts))

    def single_edits(self, word: str) -> list[str]:
        return [
            word[:i] + g + word[i + 1 :]
            for i, c in enumerate(word)
            for g in self._table.get(c, ())
        ]

