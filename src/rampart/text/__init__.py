"""Text models, text attacks and text defences.

``TextClassifier`` wraps any callable on a list of strings; ``WordAttack`` combines a
``Transformation`` (character edits, invisible characters, homoglyphs, bidi reorderings,
WordNet synonyms) with ``Constraint``s and a greedy word-importance search. ``Sanitiser``
undoes Unicode tricks, as a preprocessing defence (``SanitisedClassifier``) or a detector
(``SanitiserDetector``); ``adaptive_evaluation`` measures it against naive and adaptive
attackers. Nothing here imports ``transformers`` or ``nltk``: the Hugging Face adapter lives
in ``rampart.text.hf`` and WordNet is read on first use.
"""

from rampart.text.adaptive import AdaptiveRow, adaptive_evaluation
from rampart.text.attack import WordAttack
from rampart.text.base import CompositeTransformation, Constraint, Transformation
from rampart.text.baseline import BaselineTextModel, train_baseline
from rampart.text.bidi import BidiReorder
from rampart.text.char_edits import CharEdits
from rampart.text.classifier import TextClassifier
from rampart.text.constraints import (
    MaxEditDistance,
    MaxModificationRate,
    SentenceSimilarity,
    StopwordsConstraint,
)
from rampart.text.corpus import load_corpus, sentiment_corpus, spam_corpus
from rampart.text.detector import SanitiserDetector, Unflagged, evaluate_text_detector
from rampart.text.homoglyphs import Homoglyphs
from rampart.text.invisible import InvisibleCharacters
from rampart.text.result import TextAttackResult
from rampart.text.sanitize import SanitisedClassifier, Sanitiser
from rampart.text.synonyms import WordNetSynonyms
from rampart.text.tokens import Tokens

__all__ = [
    "AdaptiveRow",
    "BaselineTextModel",
    "BidiReorder",
    "CharEdits",
    "CompositeTransformation",
    "Constraint",
    "Homoglyphs",
    "InvisibleCharacters",
    "MaxEditDistance",
    "MaxModificationRate",
    "SanitisedClassifier",
    "Sanitiser",
    "SanitiserDetector",
    "SentenceSimilarity",
    "StopwordsConstraint",
    "TextAttackResult",
    "TextClassifier",
    "Tokens",
    "Transformation",
    "Unflagged",
    "WordAttack",
    "WordNetSynonyms",
    "adaptive_evaluation",
    "evaluate_text_detector",
    "load_corpus",
    "sentiment_corpus",
    "spam_corpus",
    "train_baseline",
]
