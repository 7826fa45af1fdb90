"""A victim behind an output defence: what a thief (or any black-box attack) sees when the
API rounds, truncates, noises or withholds its scores.

``defend(victim, "topk:1")`` returns a ``rampart.BlackBoxClassifier`` whose query function
asks the victim, turns its answer into probabilities, applies the defence and answers with
the result (labels for ``labels``). Being a black-box classifier, the defended victim counts
its own queries, can log them and enforce a budget, and refuses white-box attacks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rampart.blackbox import BlackBoxClassifier
from rampart.errors import ConfigError
from rampart.extraction.output_defences import OutputDefence
from rampart.extraction.victim import answer_probabilities, check_victim
from rampart.models import Classifier

__all__ = ["DefendedQuery", "defend"]


class DefendedQuery:
    """The query function of a defended victim: NumPy batch in, defended answers out."""

    def __init__(self, victim: Classifier, defence: OutputDefence, seed: int = 0) -> None:
        self.victim = victim
        self.defence = defence
        self.generator = torch.Generator().manual_seed(int(seed))
        self.name = f"{getattr(victim, 'name', None) or type(victim).__name__} [{defence}]"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        answers = self.defence(answer_probabilities(self.victim, torch.from_numpy(batch)),
                               self.generator)
        if self.defence.label_only:
            return answers.argmax(dim=1).numpy()
        return answers.numpy()


def defend(
    victim: Classifier,
    defence: str | OutputDefence,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    query_log: str | Path | None = None,
    max_queries: int | None = None,
) -> BlackBoxClassifier:
    """``victim`` answering through ``defence`` (a spec such as ``"rounding:2"`` or an
    ``OutputDefence``); ``seed`` fixes the noise of ``noise:STD``."""
    victim = check_victim(victim)
    defence = OutputDefence.parse(defence)
    if victim.input_shape is None:
        raise ConfigError("defend() needs a victim that knows its input shape; build the "
                          "Classifier with input_shape=(C, H, W).")
    query = DefendedQuery(victim, defence, seed)
    return BlackBoxClassifier(
        query, num_classes=victim.num_classes, input_shape=victim.input_shape,
        bounds=victim.bounds, output="labels" if defence.label_only else "scores",
        scores="probabilities", batch_size=batch_size or victim.batch_size,
        query_log=query_log, max_queries=max_queries, name=query.name)
