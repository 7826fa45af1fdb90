"""Bidirectional-control reorderings: text stored in one order, displayed in another.

Following Boucher et al. ("Bad Characters", IEEE S&P 2022), a segment of a word is stored
reversed and wrapped in RIGHT-TO-LEFT OVERRIDE ... POP DIRECTIONAL FORMATTING, so a renderer
shows the original word while the model reads the reversed characters. The ``isolate``
style also wraps the override in RLI ... PDI so it cannot disturb the text around it; the
``wrap`` style only surrounds the word with LRO ... PDF (no visible change, new code points).
``visual_order`` undoes the overrides the way a renderer does, for tests and the sanitiser.
"""

from __future__ import annotations

from rampart.errors import ConfigError
from rampart.text.edits import CharTransformation, check_choices

LRE, RLE, PDF, LRO, RLO = "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"
LRI, RLI, FSI, PDI = "\u2066", "\u2067", "\u2068", "\u2069"
LRM, RLM, ALM = "\u200e", "\u200f", "\u061c"
BIDI_CONTROLS = frozenset({LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI, LRM, RLM, ALM})
STYLES = ("override", "isolate", "wrap")


def encode_segment(word: str, start: int, stop: int, style: str) -> str:
    """``word`` with ``word[start:stop]`` stored so that it displays unchanged."""
    head, segment, tail = word[:start], word[start:stop], word[stop:]
    if style == "override":
        return head + RLO + segment[::-1] + PDF + tail
    if style == "isolate":
        return head + RLI + RLO + segment[::-1] + PDF + PDI + tail
    if style == "wrap":
        return head + LRO + segment + PDF + tail
    raise ConfigError(f"unknown bidi style {style!r}; choose from {', '.join(STYLES)}")


def visual_order(text: str) -> str:
    """The order a renderer displays ``text`` in, for left-to-right text whose only
    right-to-left parts are override spans: each RLO ... PDF span is reversed (nested spans
    handled), embeddings and isolates are dropped, and all bidi controls are removed. Real
    right-to-left scripts (Arabic, Hebrew) need the full Unicode bidi algorithm instead.
    """
    # A stack of (is_rtl_override, items) frames; a closed span becomes one item (a string
    # longer than one character is never split again), so nested spans keep their order.
    stack: list[tuple[bool, list[str]]] = [(False, [])]

    def close() -> None:
        rtl, items = stack.pop()
        stack[-1][1].append("".join(reversed(items) if rtl else items))

    for char in text:
        if char in (RLO, LRO, RLE, LRE):
            stack.append((char == RLO, []))
        elif char == PDF and len(stack) > 1:
            close()
        elif char not in BIDI_CONTROLS:
            stack[-1][1].append(char)
    while len(stack) > 1:  # unterminated spans end at the end of the paragraph
        close()
    return "".join(stack[0][1])


class BidiReorder(CharTransformation):
    """Store a segment of a word reversed inside bidi overrides so it displays unchanged.

    Args:
        styles: which encodings to propose (override, isolate, wrap).
        min_segment: the shortest segment that is reversed.
        max_edits: how many segments of one word may be re-encoded.
        max_candidates, min_length: see ``CharTransformation``.
    """

    name = "bidi"

    def __init__(
        self,
        styles: tuple[str, ...] | list[str] = ("override", "isolate"),
        min_segment: int = 2,
        max_edits: int = 1,
        max_candidates: int = 32,
        min_length: int = 2,
    ) -> None:
        super().__init__(max_edits, max_candidates, min_length)
        self.styles = check_choices(styles, STYLES, "bidi styles")
        if int(min_segment) < 1:
            raise ConfigError(f"min_segment must be at least 1, got {min_segment}")
        self.min_segment = int(min_segment)

    def single_edits(self, word: str) -> list[str]:
        # Only plain stretches (no controls yet) are re-encoded, so edits never nest.
        out: list[str] = []
        runs = _plain_runs(word)
        for run_start, run_stop in runs:
            for start in range(run_start, run_stop):
                for stop in range(start + self.min_segment, run_stop + 1):
                    segment = word[start:stop]
                    for style in self.styles:
                        if style != "wrap" and segment == segment[::-1]:
                            continue  # a palindrome stores the same characters reversed
                        out.append(encode_segment(word, start, stop, style))
        return out


def _plain_runs(word: str) -> list[tuple[int, int]]:
    """(start, stop) of the stretches of ``word`` outside any bidi span."""
    runs: list[tuple[int, int]] = []
    depth, start = 0, 0
    for i, char in enumerate(word):
        if char in (RLO, LRO, RLE, LRE, RLI, LRI, FSI):
            if depth == 0 and i > start:
                runs.append((start, i))
            depth += 1
        elif char in (PDF, PDI):
            depth = max(0, depth - 1)
            if depth == 0:
                start = i + 1
    if depth == 0 and len(word) > start:
        runs.append((start, len(word)))
    return runs
