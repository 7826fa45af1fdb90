"""Showing adversarial texts honestly: invisible and lookalike characters made visible.

A report that prints an invisible-character or bidi attack as-is shows a text identical to
the original. ``visible`` writes every invisible character as ``<U+200B>``; ``changes``
lists the non-ASCII characters an attack introduced, with their Unicode names.
"""

from __future__ import annotations

import unicodedata

from rampart.text.sanitize import is_invisible


def visible(text: str) -> str:
    """``text`` with invisible, format, control and bidi characters written as ``<U+XXXX>``
    (tab and newline kept)."""
    return "".join(f"<U+{ord(c):04X}>" if is_invisible(c) else c for c in text)


def changes(original: str, adversarial: str, limit: int = 8) -> list[str]:
    """Characters of ``adversarial`` that are invisible or non-ASCII and not in
    ``original``, as ``"е U+0435 CYRILLIC SMALL LETTER IE"`` (at most ``limit``)."""
    seen = set(original)
    out: list[str] = []
    for c in dict.fromkeys(adversarial):
        if c in seen or (c.isascii() and not is_invisible(c)):
            continue
        name = unicodedata.name(c, "unnamed")
        shown = f"<U+{ord(c):04X}>" if is_invisible(c) else c
        out.append(f"{shown} U+{ord(c):04X} {name}")
        if len(out) >= limit:
            break
    return out
