"""Splitting a text into words and the separators around them, reversibly.

Attacks edit one word at a time and must give back the text exactly as it was everywhere
else, so a ``Tokens`` keeps every character: ``Tokens.from_text(t).join() == t`` always.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Characters that may sit inside a word besides letters and digits. Format characters (Cf:
# zero-width and bidi controls) and combining marks count as word characters so that a word
# an attack has decorated with them still reads back as one word.
_WORD_PUNCTUATION = frozenset("'-")
_WORD_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Cf"})


def is_word_char(char: str) -> bool:
    """Whether ``char`` belongs to a word: a letter, digit, ' or -, mark or format char."""
    if char.isalnum():
        return True
    if char in _WORD_PUNCTUATION:
        return True
    return unicodedata.category(char) in _WORD_CATEGORIES


@dataclass(frozen=True)
class Tokens:
    """A text split into words and the separators around them, so join() restores it exactly.

    ``separators`` has ``len(words) + 1`` entries: the text before the first word, between
    consecutive words, and after the last one (each may be empty).
    """

    words: tuple[str, ...]
    separators: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.separators) != len(self.words) + 1:
            raise ValueError(
                f"Tokens needs len(words) + 1 separators, got {len(self.words)} words and "
                f"{len(self.separators)} separators"
            )

    @classmethod
    def from_text(cls, text: str) -> Tokens:
        """Split ``text``: words are runs of letters, digits, ' and - (see ``is_word_char``)."""
        words: list[str] = []
        separators: list[str] = []
        start = 0
        i = 0
        n = len(text)
        while i < n:
            if is_word_char(text[i]):
                separators.append(text[start:i])
                j = i + 1
                while j < n and is_word_char(text[j]):
                    j += 1
                words.append(text[i:j])
                start = i = j
            else:
                i += 1
        separators.append(text[start:])
        return cls(tuple(words), tuple(separators))

    def join(self) -> str:
        """The text these tokens came from (with any replacements made)."""
        parts = [self.separators[0]]
        for word, sep in zip(self.words, self.separators[1:], strict=True):
            parts.append(word)
            parts.append(sep)
        return "".join(parts)

    def replace(self, index: int, word: str) -> Tokens:
        """A copy with word ``index`` replaced by ``word`` (which may be empty: a deletion)."""
        if not 0 <= index < len(self.words):
            raise IndexError(f"word index {index} out of range for {len(self.words)} words")
        words = list(self.words)
        words[index] = word
        return Tokens(tuple(words), self.separators)

    def delete(self, index: int) -> Tokens:
        """A copy without word ``index`` and without the separator that followed it."""
        if not 0 <= index < len(self.words):
            raise IndexError(f"word index {index} out of range for {len(self.words)} words")
        words = self.words[:index] + self.words[index + 1 :]
        if index == len(self.words) - 1:
            # The last word: keep what came after it, drop the separator before it.
            seps = self.separators[:index] + self.separators[index + 1 :]
        else:
            seps = self.separators[: index + 1] + self.separators[index + 2 :]
        return Tokens(words, seps)

    def __len__(self) -> int:
        return len(self.words)
