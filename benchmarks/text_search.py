"""How much the lockstep greedy search saves: one text at a time vs texts batched together.

``WordAttack(batch_size=B)`` searches B texts in lockstep, so each model call scores the
candidates of B texts at once. The results do not depend on B (the benchmark checks that the
adversarial texts and per-text queries are identical); only the number of model calls and the
wall time change. Two models on the built-in sentiment corpus (seed 0):

* the baseline (hashed n-grams, trained on 2,000 texts), attacked with char-edits;
* a small randomly initialised BERT (2 layers, hidden 64, word-level vocabulary of the corpus)
  through ``HuggingFaceClassifier``, if transformers is installed: untrained, so nearly every
  text spends its whole budget; it measures the throughput of the search, not attack strength.

Usage:
    .venv/bin/python benchmarks/text_search.py [--n 200] [--batches 1,16,128]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, environment, measure, write_json  # noqa: E402
from rampart.text import CharEdits, TextClassifier, WordAttack  # noqa: E402
from rampart.text.baseline import train_baseline  # noqa: E402
from rampart.text.corpus import sentiment_corpus  # noqa: E402


def tiny_bert(texts: list[str]) -> TextClassifier | None:
    try:
        import transformers
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    except ModuleNotFoundError:
        return None
    from rampart.text.hf import HuggingFaceClassifier

    words = sorted({w for t in texts for w in t.lower().replace(".", " ").split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=128,
                                     max_position_embeddings=64, num_labels=2)
    return HuggingFaceClassifier(transformers.BertForSequenceClassification(config), tokenizer,
                                 device="cpu", batch_size=256)


def run(name: str, model: TextClassifier, texts: list[str], labels: list[int],
        batches: list[int], max_queries: int) -> list[dict[str, Any]]:
    rows, reference = [], None
    for b in batches:
        model.reset_queries()  # and model.calls
        attack = WordAttack(CharEdits(), max_queries=max_queries, batch_size=b)
        result, m = measure(lambda a=attack, mm=model: a(mm, texts, labels))
        if reference is None:
            reference = result
        same = (result.adversarial == reference.adversarial
                and torch.equal(result.queries, reference.queries))
        rows.append({"model": name, "batch_size": b, "wall_s": m.wall_s,
                     "model_calls": model.calls, "queries": model.queries,
                     "queries_per_s": model.queries / m.wall_s,
                     "success_rate": result.summary()["success_rate"],
                     "identical_to_batch_1": same})
        print(f"{name:9s} batch {b:4d}: {m.wall_s:7.2f} s, {model.calls:6d} model calls, "
              f"{model.queries:7d} queries ({model.queries / m.wall_s:8.0f}/s), success "
              f"{result.summary()['success_rate']:.1%}, identical: {same}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batches", default="1,16,128")
    parser.add_argument("--max-queries", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batches.split(",")]
    texts, labels = sentiment_corpus(2000 + args.n, seed=0)
    held, held_y = texts[2000:], labels[2000:]
    baseline = train_baseline(texts[:2000], labels[:2000], seed=0).classifier(batch_size=256)
    rows = run("baseline", baseline, held, held_y, batches, args.max_queries)
    bert = tiny_bert(texts)
    if bert is not None:
        rows += run("tiny-bert", bert, held, held_y, batches, args.max_queries)
    path = write_json(RESULTS_DIR / "text_search.json",
                      {"settings": vars(args), "rows": rows, "environment": environment(1)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
