"""Text attacks by name, for the CLI, benchmarks and configs.

Each name maps to a factory that takes the per-word edit budget and returns a
``Transformation``. ``synonyms`` needs WordNet (``rampart.text.wordnet``); ``available()``
leaves it out, with the reason, when WordNet is not installed.
"""

from __future__ import annotations

from collections.abc import Callable

from rampart.errors import ConfigError
from rampart.text.base import Transformation


def _char_edits(max_edits: int) -> Transformation:
    from rampart.text.char_edits import CharEdits

    return CharEdits(max_edits=max_edits)


def _invisible(max_edits: int) -> Transformation:
    from rampart.text.invisible import InvisibleCharacters

    return InvisibleCharacters(max_edits=max_edits)


def _homoglyphs(max_edits: int) -> Transformation:
    from rampart.text.homoglyphs import Homoglyphs

    return Homoglyphs(max_edits=max_edits)


def _bidi(max_edits: int) -> Transformation:
    from rampart.text.bidi import BidiReorder

    return BidiReorder(max_edits=max_edits)


def _synonyms(max_edits: int) -> Transformation:
    from rampart.text.synonyms import WordNetSynonyms

    return WordNetSynonyms()


TRANSFORMATIONS: dict[str, Callable[[int], Transformation]] = {
    "char-edits": _char_edits,
    "invisible": _invisible,
    "homoglyphs": _homoglyphs,
    "bidi": _bidi,
    "synonyms": _synonyms,
}


def make_transformation(name: str, max_edits: int = 1) -> Transformation:
    """The transformation called ``name`` with ``max_edits`` edits per word."""
    if name not in TRANSFORMATIONS:
        raise ConfigError(
            f"unknown text attack {name!r}; choose from {', '.join(TRANSFORMATIONS)}"
        )
    return TRANSFORMATIONS[name](max_edits)


def unavailable() -> dict[str, str]:
    """Attack names that cannot run here, with the reason (WordNet missing for synonyms)."""
    from rampart.text.wordnet import wordnet_missing_reason

    reason = wordnet_missing_reason()
    return {"synonyms": reason} if reason else {}


def available() -> list[str]:
    """The attack names that can run on this machine."""
    missing = unavailable()
    return [name for name in TRANSFORMATIONS if name not in missing]
