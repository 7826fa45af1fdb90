"""Character edits: swap adjacent letters, substitute a keyboard neighbour, delete, insert.

The typo attack of DeepWordBug / TextBugger: small misspellings a human reads through but a
word-level model may not. Substitutions and insertions use QWERTY neighbours so typos look
natural; case is kept.
"""

from __future__ import annotations

from rampart.text.edits import CharTransformation, check_choices

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
OPERATIONS = ("swap", "substitute", "delete", "insert")


def _keyboard_neighbours() -> dict[str, str]:
    where = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    out: dict[str, str] = {}
    for c, (r, i) in where.items():
        near = []
        for dr in (-1, 0, 1):
            row = r + dr
            if 0 <= row < len(_ROWS):
                for di in (-1, 0, 1):
                    j = i + di
                    if (dr, di) != (0, 0) and 0 <= j < len(_ROWS[row]):
                        near.append(_ROWS[row][j])
        out[c] = "".join(near)
    return out


KEYBOARD = _keyboard_neighbours()


def _same_case(template: str, char: str) -> str:
    return char.upper() if template.isupper() else char


class CharEdits(CharTransformation):
    """Typos: adjacent swaps, keyboard-neighbour substitutions, deletions and insertions.

    Args:
        operations: which edits to use (any of swap, substitute, delete, insert).
        max_edits, max_candidates, min_length: see ``CharTransformation``.
    """

    name = "char-edits"

    def __init__(
        self,
        operations: tuple[str, ...] | list[str] = OPERATIONS,
        max_edits: int = 1,
        max_candidates: int = 32,
        min_length: int = 3,
    ) -> None:
        super().__init__(max_edits, max_candidates, min_length)
        self.operations = check_choices(operations, OPERATIONS, "character operations")

    def single_edits(self, word: str) -> list[str]:
        out: list[str] = []
        n = len(word)
        if "swap" in self.operations:
            out += [
                word[:i] + word[i + 1] + word[i] + word[i + 2 :]
                for i in range(n - 1)
                if word[i] != word[i + 1]
            ]
        if "substitute" in self.operations:
            for i, c in enumerate(word):
                for k in KEYBOARD.get(c.lower(), ""):
                    out.append(word[:i] + _same_case(c, k) + word[i + 1 :])
        if "delete" in self.operations and n > 1:
            out += [word[:i] + word[i + 1 :] for i in range(n)]
        if "insert" in self.operations:
            # A neighbour of the previous letter typed twice: "goood", "grewat".
            for i in range(1, n + 1):
                c = word[i - 1]
                for k in KEYBOARD.get(c.lower(), "")[:3] + c.lower():
                    out.append(word[:i] + _same_case(c, k) + word[i:])
        return [w for w in dict.fromkeys(out) if w != word]
