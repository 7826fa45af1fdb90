"""The text sanitiser: undo the Unicode tricks an attacker can hide in a text.

Steps, in order: resolve bidi overrides to the order a reader sees (``visual_order``), strip
invisible characters (format characters such as zero-width spaces and joiners, bidi controls,
variation selectors, tag characters and control characters other than tab/newline), apply
Unicode NFKC normalisation (fullwidth and mathematical letters become ASCII), and map the
confusables table's lookalikes back to ASCII. ``SanitisedClassifier`` puts it in front of a
model as a preprocessing defence; ``rampart.text.detector`` uses it as a detector.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from difflib import SequenceMatcher

import torch

from rampart.errors import ConfigError
from rampart.text.bidi import BIDI_CONTROLS, visual_order
from rampart.text.classifier import TextClassifier
from rampart.text.confusables import to_ascii

NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD")
_KEEP_CONTROLS = frozenset("\t\n\r")


def is_invisible(char: str) -> bool:
    """Whether ``char`` renders as nothing: format (Cf), control (Cc, except tab/newline),
    variation selectors, or a bidi control."""
    if char in BIDI_CONTROLS:
        return True
    category = unicodedata.category(char)
    if category == "Cf":
        return True
    if category == "Cc":
        return char not in _KEEP_CONTROLS
    code = ord(char)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF  # variation selectors


class Sanitiser:
    """Turn a text into what a reader sees, in plain code points.

    Args:
        normal_form: the Unicode normalisation (``NFKC`` folds compatibility characters such
            as fullwidth letters; ``None`` skips it).
        strip_invisible: remove zero-width, format, control and bidi characters.
        resolve_bidi: reorder RLO ... PDF spans to display order before stripping.
        map_confusables: map the confusables table's lookalikes back to ASCII. This also
            rewrites genuine Cyrillic / Greek / Armenian letters; set ``mixed_only`` to map
            only words that also contain ASCII letters.
        mixed_only: see ``map_confusables``.
    """

    def __init__(
        self,
        normal_form: str | None = "NFKC",
        *,
        strip_invisible: bool = True,
        resolve_bidi: bool = True,
        map_confusables: bool = True,
        mixed_only: bool = False,
    ) -> None:
        if normal_form is not None and normal_form not in NORMAL_FORMS:
            raise ConfigError(
                f"unknown normal form {normal_form!r}; choose one of {', '.join(NORMAL_FORMS)}"
            )
        self.normal_form = normal_form
        self.strip_invisible = bool(strip_invisible)
        self.resolve_bidi = bool(resolve_bidi)
        self.map_confusables = bool(map_confusables)
        self.mixed_only = bool(mixed_only)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"Sanitiser({args})"

    def __call__(self, text: str) -> str:
        """The sanitised form of one text."""
        if self.resolve_bidi and any(c in BIDI_CONTROLS for c in text):
            text = visual_order(text)
        if self.strip_invisible:
            text = "".join(c for c in text if not is_invisible(c))
        if self.normal_form is not None:
            text = unicodedata.normalize(self.normal_form, text)
        if self.map_confusables:
            text = self._map(text)
        return text

    def _map(self, text: str) -> str:
        table = to_ascii()
        if not self.mixed_only:
            return "".join(table.get(c, c) for c in text)
        out = []
        for word in text.split(" "):
            mixed = any(c.isascii() and c.isalpha() for c in word)
            out.append("".join(table.get(c, c) for c in word) if mixed else word)
        return " ".join(out)

    def sanitise(self, texts: Sequence[str]) -> list[str]:
        """``self(text)`` for each text."""
        return [self(t) for t in texts]

    def changed_fraction(self, text: str, *, ignore_benign: bool = True) -> float:
        """The share of ``text``'s characters that sanitising removed or replaced (0 when it
        is already clean). With ``ignore_benign``, compatibility folds that produce no letter
        or digit (no-break space, ellipsis, fullwidth punctuation) do not count: ordinary
        typography is not an attack."""
        base = benign_fold(text) if ignore_benign else text
        clean = self(text)
        if clean == base:
            return 0.0
        matched = sum(b.size for b in SequenceMatcher(None, base, clean, autojunk=False)
                      .get_matching_blocks())
        return 1.0 - matched / max(1, len(base))

    def scores(self, texts: Sequence[str], *, ignore_benign: bool = True) -> torch.Tensor:
        """``changed_fraction`` of each text (float32)."""
        return torch.tensor([self.changed_fraction(t, ignore_benign=ignore_benign)
                             for t in texts], dtype=torch.float32)


def benign_fold(text: str) -> str:
    """``text`` with the NFKC folds that yield no letter or digit applied (no-break space
    -> space, ellipsis -> three dots, fullwidth ! -> !); everything else unchanged."""
    out = []
    for char in text:
        if char.isascii() or is_invisible(char):
            out.append(char)
            continue
        folded = unicodedata.normalize("NFKC", char)
        out.append(folded if not any(c.isalnum() for c in folded) else char)
    return "".join(out)


class SanitisedClassifier(TextClassifier):
    """A ``TextClassifier`` that sanitises every text before the wrapped model sees it.

    Queries are counted here (what an attacker pays) and by the wrapped model. A text that
    sanitises to nothing (only invisible characters) is passed on unchanged, so the wrapped
    model's own input checks never reject it.
    """

    def __init__(
        self, model: TextClassifier, sanitiser: Sanitiser | None = None, *,
        batch_size: int | None = None,
    ) -> None:
        if not isinstance(model, TextClassifier):
            raise ConfigError(
                f"SanitisedClassifier wraps a rampart.text.TextClassifier, got "
                f"{type(model).__name__}"
            )
        self.model = model
        self.sanitiser = sanitiser or Sanitiser()
        super().__init__(
            self._forward, model.num_classes, labels=model.labels,
            batch_size=batch_size or model.batch_size,
        )

    def _forward(self, texts: list[str]) -> torch.Tensor:
        clean = [s if s.strip() else t for s, t in zip(self.sanitiser.sanitise(texts), texts,
                                                          strict=True)]
        return self.model.logits(clean)  # both logits calls check the texts
