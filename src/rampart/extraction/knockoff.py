"""Knockoff-style model stealing (Orekondy et al., 2019): query a victim on a pool of
unlabelled inputs and train a copy on its answers.

The thief spends its budget in rounds (a geometric schedule of query counts, e.g. 156, 312,
625, 1,250, 2,500, 5,000): each round picks more pool inputs with its query strategy, asks
the victim, and trains a fresh surrogate on every answer gathered so far, soft labels (the
victim's probabilities) when the victim gives scores, hard labels when it answers with
labels only. After each round the copy is measured on held-out inputs: agreement with the
victim's labels and, with true labels, accuracy. The curve of both against queries spent
is the result. The budget is never exceeded: each pool input is queried at most once and
a round never asks for more than what is left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rampart.errors import ConfigError, InputError, TargetError
from rampart.extraction.result import CurvePoint, ExtractionRun
from rampart.extraction.selection import QueryStrategy, make_strategy
from rampart.extraction.victim import (
    answer_probabilities,
    check_victim,
    is_label_only,
    query_count,
)
from rampart.models import Classifier
from rampart.train import accuracy, fit

__all__ = ["KnockoffNets", "complete_distribution", "query_schedule"]

LABELS = ("auto", "soft", "hard")
ZERO = 1e-9  # probabilities below this were answered as 0


def query_schedule(budget: int, rounds: int, smallest: int = 10) -> list[int]:
    """Query counts after each round: doubling up to ``budget`` (never below ``smallest``
    for the first round unless the budget is smaller)."""
    if budget < 1:
        raise ConfigError(f"the query budget must be at least 1, got {budget}.")
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}.")
    first = max(budget / 2 ** (rounds - 1), min(smallest, budget))
    points = np.geomspace(first, budget, rounds) if rounds > 1 else np.array([budget])
    out = sorted({int(round(p)) for p in points} | {budget})
    return [c for c in out if c >= 1]


def complete_distribution(p: torch.Tensor) -> torch.Tensor:
    """Answers as training targets: negative values clipped, the mass an API withheld
    (top-k, rounding) spread evenly over the classes it reported as 0, rows summing to 1.

    Values below ``ZERO`` count as 0: a black-box target hands probabilities over as
    log-probabilities, where an answered 0 comes back as ``exp(log(1e-12))``.
    """
    p = torch.where(p < ZERO, torch.zeros_like(p), p)
    missing = (1.0 - p.sum(dim=1, keepdim=True)).clamp_min(0.0)
    zeros = (p == 0).float()
    count = zeros.sum(dim=1, keepdim=True)
    share = torch.where(count > 0, missing / count.clamp_min(1.0), torch.zeros_like(missing))
    p = p + share * zeros
    return p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability targets (distillation's loss)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class KnockoffNets:
    """A thief with a query budget, a surrogate architecture and a query strategy.

    Args:
        surrogate: builds a fresh, untrained copy (an ``nn.Module`` factory); it gets the
            victim's raw inputs and must return ``num_classes`` logits.
        budget: the most victim queries (samples) the thief may spend.
        strategy: ``"random"``, ``"adaptive"`` or a ``QueryStrategy``.
        rounds: rounds of the doubling schedule (ignored with ``checkpoints``).
        checkpoints: explicit query counts after each round, e.g. ``[100, 250, 500]``.
        labels: ``"auto"`` (soft unless the victim is label-only), ``"soft"`` or ``"hard"``.
        epochs: training epochs over the transfer set each round, raised so that each round
            takes at least ``min_steps`` optimiser steps (small transfer sets).
        batch_size, lr: Adam's mini-batch and learning rate.
        query_batch: samples per victim call.
        device: where the surrogate trains (default: the victim's device).
        seed: seeds query selection and training.
    """

    def __init__(
        self,
        surrogate: Callable[[], nn.Module],
        *,
        budget: int,
        strategy: str | QueryStrategy = "random",
        rounds: int = 5,
        checkpoints: Sequence[int] | None = None,
        labels: str = "auto",
        epochs: int = 30,
        min_steps: int = 300,
        batch_size: int = 64,
        lr: float = 3e-3,
        query_batch: int = 256,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        if not callable(surrogate):
            raise ConfigError("surrogate must be a function that builds a fresh nn.Module.")
        if labels not in LABELS:
            raise ConfigError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}.")
        for name, value in (("epochs", epochs), ("batch_size", batch_size),
                            ("query_batch", query_batch)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}.")
        if not lr > 0:
            raise ConfigError(f"lr must be positive, got {lr}.")
        self.surrogate = surrogate
        self.strategy = make_strategy(strategy)
        if checkpoints is not None:
            steps = [int(c) for c in checkpoints]
            if not steps or steps[0] < 1 or any(np.diff(steps) <= 0):
                raise ConfigError(f"checkpoints must be increasing positive query counts, got "
                                  f"{list(checkpoints)}.")
            if steps[-1] > budget:
                raise ConfigError(f"checkpoint {steps[-1]} is beyond the budget of {budget}.")
            self.checkpoints = steps
        else:
            self.checkpoints = query_schedule(budget, rounds)
        self.budget = int(budget)
        self.labels = labels
        self.epochs, self.min_steps = int(epochs), int(min_steps)
        self.batch_size, self.lr, self.query_batch = int(batch_size), float(lr), int(query_batch)
        self.device = None if device is None else torch.device(device)
        self.seed = int(seed)

    def __call__(
        self,
        victim: Classifier,
        pool: torch.Tensor,
        x_eval: torch.Tensor,
        y_eval: torch.Tensor | None = None,
        *,
        reference: torch.Tensor | None = None,
        monitor: Any = None,
        client_id: str = "thief",
        defence: str = "none",
        on_round: Callable[[CurvePoint], None] | None = None,
    ) -> ExtractionRun:
        """Steal ``victim`` using inputs from ``pool``; measure the copy on ``x_eval``.

        ``reference`` is the victim's labels on ``x_eval`` (queried here, outside the budget
        and counted as ``evaluation_queries``, when not given); ``y_eval`` the true labels.
        ``monitor`` (a ``PradaMonitor``) watches the thief's queries as client ``client_id``.
        ``defence`` only labels the run (the defence lives in the victim, see ``defend``).
        """
        started = time.perf_counter()
        victim = check_victim(victim)
        pool, x_eval = _inputs(pool, "pool"), _inputs(x_eval, "x_eval")
        if pool.shape[0] < self.checkpoints[-1]:
            raise ConfigError(f"the pool holds {pool.shape[0]} inputs but the budget is "
                              f"{self.checkpoints[-1]} queries; each pool input is queried at "
                              "most once, so give a larger pool or a smaller budget.")
        if pool.shape[1:] != x_eval.shape[1:]:
            raise InputError(f"pool inputs are shaped {tuple(pool.shape[1:])} but evaluation "
                             f"inputs {tuple(x_eval.shape[1:])}; both must fit the victim.")
        evaluation_queries = 0
        if reference is None:
            reference = answer_probabilities(victim, x_eval).argmax(dim=1)
            evaluation_queries = x_eval.shape[0]
        reference = _labels(reference, x_eval.shape[0], "reference")
        if y_eval is not None:
            y_eval = _labels(y_eval, x_eval.shape[0], "y_eval")
        soft = self.labels == "soft" or (self.labels == "auto" and not is_label_only(victim))
        device = self.device or victim.device
        run = ExtractionRun(strategy=self.strategy.name, budget=self.checkpoints[-1],
                            defence=defence, labels="soft" if soft else "hard",
                            evaluation_queries=evaluation_queries)
        generator = torch.Generator().manual_seed(self.seed)
        available = torch.ones(pool.shape[0], dtype=torch.bool)
        queried: list[torch.Tensor] = []
        answers: list[torch.Tensor] = []
        counted_before = query_count(victim)
        surrogate: nn.Module | None = None
        for checkpoint in self.checkpoints:
            spent = sum(a.shape[0] for a in answers)
            picked = self.strategy.select(pool, available.nonzero().reshape(-1),
                                          checkpoint - spent, surrogate, generator)
            available[picked] = False
            try:
                for chunk in picked.split(self.query_batch):
                    got = answer_probabilities(victim, pool[chunk])
                    queried.append(pool[chunk])
                    answers.append(got)
                    if monitor is not None:
                        monitor.observe(client_id, pool[chunk], got.argmax(dim=1))
            except TargetError as exc:
                run.stopped = f"the victim stopped answering: {exc}"
            if sum(a.shape[0] for a in answers) == spent:
                break  # nothing new to learn from
            x_t, a_t = torch.cat(queried), torch.cat(answers)
            tick = time.perf_counter()
            surrogate = self._train(x_t, a_t, soft, device)
            point = CurvePoint(queries=x_t.shape[0],
                               agreement=accuracy(surrogate, x_eval, reference),
                               accuracy=None if y_eval is None else accuracy(
                                   surrogate, x_eval, y_eval),
                               train_seconds=time.perf_counter() - tick)
            counted = query_count(victim)
            if counted is not None and counted_before is not None:
                point.victim_queries = counted - counted_before
            run.points.append(point)
            if on_round is not None:
                on_round(point)
            if run.stopped:
                break
        run.surrogate = surrogate
        if monitor is not None:
            run.prada = monitor.status(client_id).to_dict()
        run.seconds = time.perf_counter() - started
        return run

    def _train(self, x: torch.Tensor, answers: torch.Tensor, soft: bool,
               device: torch.device) -> nn.Module:
        torch.manual_seed(self.seed)
        net = self.surrogate()
        if not isinstance(net, nn.Module):
            raise ConfigError(f"the surrogate factory returned {type(net).__name__}, not an "
                              "nn.Module.")
        net = net.to(device)
        steps_per_epoch = math.ceil(x.shape[0] / self.batch_size)
        epochs = max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))
        if soft:
            targets, loss = complete_distribution(answers), soft_cross_entropy
        else:
            targets, loss = answers.argmax(dim=1), F.cross_entropy
        try:
            return fit(net, x, targets, epochs=epochs, batch_size=self.batch_size, lr=self.lr,
                       seed=self.seed, loss_fn=loss)
        except RuntimeError as exc:
            raise ConfigError(f"the surrogate failed to train on inputs shaped "
                              f"{tuple(x.shape[1:])} ({exc}); check that --surrogate takes the "
                              "victim's inputs and returns one logit per class.") from None


def _inputs(x: Any, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(x).detach().cpu()
    if not tensor.is_floating_point() or tensor.ndim < 2 or tensor.shape[0] == 0:
        raise InputError(f"{what} must be a non-empty float batch shaped (N, ...), got "
                         f"{tuple(tensor.shape)} of {tensor.dtype}.")
    return tensor.float()


def _labels(y: Any, n: int, what: str) -> torch.Tensor:
    labels = torch.as_tensor(y).reshape(-1).cpu().long()
    if labels.numel() != n:
        raise InputError(f"got {labels.numel()} {what} labels for {n} evaluation inputs.")
    return labels
