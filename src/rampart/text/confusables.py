"""The confusables table shipped with rampart: ASCII characters and their lookalikes.

``data/confusables.tsv`` (written for rampart) lists a few hundred Cyrillic, Greek, Armenian,
Latin, fullwidth and mathematical characters that render like an ASCII letter or digit. The
homoglyph attack reads it one way (ASCII -> lookalikes) and the sanitiser the other way.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from rampart.errors import DataLoadError

TABLE = "confusables.tsv"


@cache
def confusable_pairs() -> tuple[tuple[str, str, str], ...]:
    """Every (ascii, lookalike, script) row of the shipped table, in file order."""
    try:
        text = resources.files("rampart.text").joinpath("data", TABLE).read_text("utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise DataLoadError(
            f"rampart's confusables table is missing ({exc}); reinstall rampart"
        ) from None
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("ascii\t"):
            continue
        ascii_char, lookalike, _, _, script, *_ = line.split("\t")
        rows.append((ascii_char, lookalike, script))
    return tuple(rows)


@cache
def lookalikes(scripts: frozenset[str] | None = None) -> dict[str, tuple[str, ...]]:
    """ASCII character -> its lookalikes (optionally only from ``scripts``)."""
    table: dict[str, list[str]] = {}
    for ascii_char, lookalike, script in confusable_pairs():
        if scripts is None or script in scripts:
            table.setdefault(ascii_char, []).append(lookalike)
    return {k: tuple(v) for k, v in table.items()}


@cache
def to_ascii() -> dict[str, str]:
    """Lookalike -> the ASCII character it imitates (for the sanitiser)."""
    return {lookalike: ascii_char for ascii_char, lookalike, _ in confusable_pairs()}


def scripts() -> list[str]:
    """The script groups in the table (cyrillic, greek, fullwidth, ...)."""
    return sorted({script for _, _, script in confusable_pairs()})
