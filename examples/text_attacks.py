"""Attack a text classifier with typos and Unicode tricks, then defend it with the sanitiser.

Trains rampart's baseline text model on the built-in sentiment corpus (seconds), attacks 100
held-out reviews with each character-level attack under the usual constraints, and compares
the sanitiser's naive and adaptive evaluations. Everything runs offline on a CPU.

    .venv/bin/python examples/text_attacks.py
"""

from __future__ import annotations

from rampart.text import (
    BidiReorder,
    CharEdits,
    Homoglyphs,
    InvisibleCharacters,
    MaxModificationRate,
    StopwordsConstraint,
    WordAttack,
    adaptive_evaluation,
    sentiment_corpus,
    train_baseline,
)
from rampart.text.adaptive import adaptive_table
from rampart.text.display import visible


def main() -> None:
    texts, labels = sentiment_corpus(2100, seed=0)
    model = train_baseline(texts[:2000], labels[:2000], seed=0).classifier()
    held_out, held_labels = texts[2000:], labels[2000:]
    constraints = [StopwordsConstraint(), MaxModificationRate(0.3)]
    attacks = [WordAttack(t, constraints, max_queries=500)
               for t in (CharEdits(), InvisibleCharacters(), Homoglyphs(), BidiReorder())]
    for attack in attacks:
        result = attack(model, held_out, held_labels)
        s = result.summary()
        print(f"{attack.name:12s} success {s['success_rate']:.0%}  queries/text "
              f"{s['mean_queries']:.1f}  words changed {s['mean_modification_rate']:.0%}")
        for original, adversarial in result.examples(1):
            print(f"    {original}\n -> {visible(adversarial)}")
    rows, clean = adaptive_evaluation(model, attacks, held_out, held_labels)
    print()
    print(adaptive_table(rows))
    print(f"detector false-positive rate on clean texts: {clean['clean_fpr']:.1%}")


if __name__ == "__main__":
    main()
