"""``WordAttack``: a transformation, constraints and a search, called as
``attack(model, texts, labels)``.

The attack checks its inputs once, queries the clean texts in one batch, skips texts the
model already gets wrong, then runs the search on each remaining text with its own random
generator, seeded from the attack's seed and the text itself, so results do not depend on the
order of the texts, on which other texts are attacked with it, or on the process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import torch

from rampart.errors import ConfigError, PartialResultError, TargetError
from rampart.text.base import CompositeTransformation, Constraint, Transformation
from rampart.text.classifier import TextClassifier, check_labels, check_texts
from rampart.text.result import TextAttackResult
from rampart.text.search import greedy_search_batch
from rampart.text.tokens import Tokens

SEARCHES = ("greedy",)
ProgressFn = Callable[[int], None]


def text_rng(seed: int, text: str) -> random.Random:
    """The random generator for attacking ``text``: from the seed and the text only (string
    seeds hash with SHA-512, so the stream is the same in every process)."""
    return random.Random(f"{seed}:{text}")


class WordAttack:
    """A word-by-word text attack: ``WordAttack(transformation, constraints=[...])``.

    Args:
        transformation: proposes replacements for one word; a list is combined into one.
        constraints: every proposal must pass all of them (cheapest first is fastest).
        search: ``"greedy"``: greedy word-importance ranking by deletion.
        max_queries: model queries allowed per text, including the clean query.
        seed: seeds each text's random generator, together with the text itself.
        name: the attack's name in reports (default: the transformation's name).
        batch_size: texts searched together in lockstep (their candidates share model
            calls); default: the model's batch size. Results do not depend on it.
    """

    def __init__(
        self,
        transformation: Transformation | Sequence[Transformation],
        constraints: Sequence[Constraint] = (),
        *,
        search: str = "greedy",
        max_queries: int = 2000,
        seed: int = 0,
        name: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        if not isinstance(transformation, Transformation):
            transformation = CompositeTransformation(list(transformation))
        if search not in SEARCHES:
            raise ConfigError(f"unknown search {search!r}; choose one of {', '.join(SEARCHES)}")
        if int(max_queries) < 1:
            raise ConfigError(f"max_queries must be at least 1, got {max_queries}")
        if batch_size is not None and int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        for c in constraints:
            if not isinstance(c, Constraint):
                raise ConfigError(f"{c!r} is not a rampart.text.Constraint")
        self.transformation = transformation
        self.constraints = list(constraints)
        self.search = search
        self.max_queries = int(max_queries)
        self.seed = int(seed)
        self.name = name or transformation.name
        self.batch_size = None if batch_size is None else int(batch_size)

    def __repr__(self) -> str:
        return (
            f"WordAttack({self.transformation!r}, constraints={self.constraints!r}, "
            f"search={self.search!r}, max_queries={self.max_queries}, seed={self.seed})"
        )

    def config(self) -> dict[str, object]:
        """The attack's settings, for reports."""
        return {
            "transformation": repr(self.transformation),
            "constraints": [repr(c) for c in self.constraints],
            "search": self.search,
            "max_queries": self.max_queries,
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    def __call__(
        self,
        model: TextClassifier,
        texts: Sequence[str],
        labels: object,
        *,
        progress: ProgressFn | None = None,
    ) -> TextAttackResult:
        """Attack ``texts`` (true ``labels``); returns one row per text.

        A ``TargetError`` from the model part-way through becomes a ``PartialResultError``
        whose ``result`` holds the texts finished before it (whole batches, in order).
        """
        if not isinstance(model, TextClassifier):
            raise ConfigError(
                f"WordAttack needs a rampart.text.TextClassifier, got {type(model).__name__}; "
                "wrap your callable: TextClassifier(fn, num_classes)"
            )
        start = time.perf_counter()
        originals = check_texts(texts)
        y = check_labels(labels, len(originals), model.num_classes)
        probs = model.probabilities(originals)
        clean_pred = probs.argmax(dim=1)
        adversarial = list(originals)
        n = len(originals)
        success = torch.zeros(n, dtype=torch.bool)
        queries = torch.ones(n, dtype=torch.long)
        modified = torch.zeros(n, dtype=torch.long)
        rate = torch.zeros(n, dtype=torch.float32)
        adv_pred = clean_pred.clone()
        skipped = clean_pred != y
        columns = {
            "labels": y, "success": success, "queries": queries, "modified_words": modified,
            "modification_rate": rate, "clean_predictions": clean_pred,
            "adv_predictions": adv_pred, "skipped": skipped,
        }
        done = 0
        chunk = self.batch_size or model.batch_size
        try:
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                todo = [i for i in range(lo, hi) if not skipped[i]]
                tokens = [Tokens.from_text(originals[i]) for i in todo]
                outcomes = greedy_search_batch(
                    model, tokens, [int(y[i]) for i in todo],
                    [float(probs[i, y[i]]) for i in todo], self.transformation,
                    self.constraints, [text_rng(self.seed, originals[i]) for i in todo],
                    self.max_queries,
                )
                for i, words, outcome in zip(todo, tokens, outcomes, strict=True):
                    queries[i] = outcome.queries
                    if outcome.success:
                        adversarial[i] = outcome.tokens.join()
                        success[i] = True
                        adv_pred[i] = outcome.prediction
                        modified[i] = len(outcome.modified)
                        rate[i] = len(outcome.modified) / max(1, len(words))
                done = hi
                if progress is not None:
                    progress(hi - lo)
        except TargetError as exc:
            partial = self._result(originals, adversarial, columns, start, done)
            raise PartialResultError(
                f"the text model failed after {done} of {n} texts: {exc}",
                result=partial, done=done, total=n,
            ) from exc
        return self._result(originals, adversarial, columns, start, n)

    def _result(self, originals: list[str], adversarial: list[str],
                columns: dict[str, torch.Tensor], start: float, done: int) -> TextAttackResult:
        """The result for the first ``done`` texts."""
        return TextAttackResult(
            original=originals[:done], adversarial=adversarial[:done],
            **{k: v[:done] for k, v in columns.items()},
            attack=self.name, config=self.config(), runtime=time.perf_counter() - start,
        )
