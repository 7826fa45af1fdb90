"""The sanitiser as a detector: a text is suspicious when sanitising changes it.

The score is the share of characters the sanitiser removed or replaced; a text is flagged
when its score exceeds the threshold (0 by default: any change). Typographic compatibility
folds that yield no letter or digit (no-break spaces, ellipses) are ignored by default, so
ordinary text in a Latin script scores 0, while invisible-character, homoglyph and bidi
attacks always change something. Genuine non-Latin text that shares letters with the
confusables table (Cyrillic, Greek) is flagged unless the sanitiser maps ``mixed_only``.
``Unflagged`` turns the detector into a constraint, for attacks that must evade it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rampart.errors import ConfigError
from rampart.text.base import Constraint
from rampart.text.classifier import check_texts
from rampart.text.sanitize import Sanitiser
from rampart.text.tokens import Tokens


class SanitiserDetector:
    """Flag texts the sanitiser changes by more than ``threshold`` (share of characters).

    ``ignore_benign``: see ``Sanitiser.changed_fraction``.
    """

    def __init__(self, sanitiser: Sanitiser | None = None, threshold: float = 0.0, *,
                 ignore_benign: bool = True) -> None:
        if not 0.0 <= float(threshold) < 1.0:
            raise ConfigError(f"threshold must lie in [0, 1), got {threshold}")
        self.sanitiser = sanitiser or Sanitiser()
        self.threshold = float(threshold)
        self.ignore_benign = bool(ignore_benign)

    def __repr__(self) -> str:
        return (f"SanitiserDetector({self.sanitiser!r}, threshold={self.threshold}, "
                f"ignore_benign={self.ignore_benign})")

    def score(self, texts: Sequence[str]) -> torch.Tensor:
        """The share of each text's characters that sanitising changes."""
        return self.sanitiser.scores(check_texts(texts), ignore_benign=self.ignore_benign)

    def flag(self, texts: Sequence[str]) -> torch.Tensor:
        """True for texts whose score exceeds the threshold."""
        return self.score(texts) > self.threshold

    def calibrate(self, clean: Sequence[str], fpr: float = 0.01) -> SanitiserDetector:
        """Raise the threshold so at most ``fpr`` of these trusted clean texts are flagged
        (useful when legitimate texts contain fullwidth or non-Latin characters)."""
        # Imported here: rampart.defenses pulls in SciPy, which plain text use does not need.
        from rampart.defenses.detectors.base import check_fpr, clean_quantile

        fpr = check_fpr(fpr)
        self.threshold = max(0.0, clean_quantile(self.score(clean), fpr))
        return self


@dataclass
class TextDetection:
    """How a detector did: FPR on clean texts, TPR on adversarial texts that fooled the model."""

    clean: int
    positives: int
    fpr: float
    tpr: float | None
    auc: float | None

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))


def evaluate_text_detector(
    detector: SanitiserDetector, clean: Sequence[str], adversarial: Sequence[str]
) -> TextDetection:
    """FPR on ``clean`` texts, TPR and ROC AUC on ``adversarial`` ones (pass only successful
    adversarial examples: a text that does not fool the model needs no detecting)."""
    clean_scores = detector.score(clean)
    fpr = float((clean_scores > detector.threshold).float().mean())
    if not adversarial:
        return TextDetection(len(clean_scores), 0, fpr, None, None)
    adv_scores = detector.score(adversarial)
    tpr = float((adv_scores > detector.threshold).float().mean())
    # ROC AUC = P(adv score > clean score) + 0.5 P(equal), exactly, from all pairs.
    diff = adv_scores[:, None] - clean_scores[None, :]
    auc = float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())
    return TextDetection(len(clean_scores), len(adv_scores), fpr, tpr, auc)


class Unflagged(Constraint):
    """Allow only proposals the detector does not flag (an attacker who knows the detector)."""

    name = "unflagged"

    def __init__(self, detector: SanitiserDetector) -> None:
        self.detector = detector

    def allows(self, original: Tokens, proposed: Tokens, modified: frozenset[int]) -> bool:
        return not bool(self.detector.flag([proposed.join()])[0])

    def allows_batch(
        self, original: Tokens, proposals: list[Tokens], modified: list[frozenset[int]]
    ) -> list[bool]:
        if not proposals:
            return []
        return (~self.detector.flag([p.join() for p in proposals])).tolist()
