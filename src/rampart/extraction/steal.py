"""Steal one victim several ways: every query strategy against every output defence, each
thief watched by its own PRADA-style monitor, all curves in one ``ExtractionResult``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from rampart.errors import ConfigError
from rampart.extraction.defended import defend
from rampart.extraction.knockoff import KnockoffNets
from rampart.extraction.output_defences import OutputDefence
from rampart.extraction.prada import PradaMonitor
from rampart.extraction.result import CurvePoint, ExtractionResult
from rampart.extraction.victim import answer_probabilities, check_victim, is_label_only
from rampart.models import Classifier

__all__ = ["steal"]

RoundHook = Callable[[str, CurvePoint], None]


def steal(
    victim: Classifier,
    surrogate: Callable[[], nn.Module],
    pool: torch.Tensor,
    x_eval: torch.Tensor,
    y_eval: torch.Tensor | None = None,
    *,
    budget: int,
    strategies: Sequence[str] = ("random",),
    defences: Sequence[str | OutputDefence] = ("none",),
    rounds: int = 5,
    checkpoints: Sequence[int] | None = None,
    monitor_delta: float | None = 0.9,
    seed: int = 0,
    on_round: RoundHook | None = None,
    **thief_options: Any,
) -> ExtractionResult:
    """Run a ``KnockoffNets`` thief for each strategy behind each defence.

    The victim's labels on ``x_eval`` are asked once (from the undefended victim) and every
    copy's agreement is measured against them. ``monitor_delta`` sets each thief's PRADA
    monitor (None: no monitor). ``thief_options`` go to ``KnockoffNets`` (epochs, lr, ...).
    """
    started = time.perf_counter()
    victim = check_victim(victim)
    if not strategies or not defences:
        raise ConfigError("give at least one query strategy and one defence (none counts).")
    parsed = [OutputDefence.parse(d) for d in defences]
    x_eval = torch.as_tensor(x_eval).float()
    reference = answer_probabilities(victim, x_eval).argmax(dim=1)
    victim_accuracy = None
    if y_eval is not None:
        y_eval = torch.as_tensor(y_eval).reshape(-1).long()
        victim_accuracy = float((reference == y_eval.cpu()).double().mean())
    runs = []
    for defence in parsed:
        target = victim if defence.kind == "none" else defend(victim, defence, seed=seed)
        for strategy in strategies:
            thief = KnockoffNets(surrogate, budget=budget, strategy=strategy, rounds=rounds,
                                 checkpoints=checkpoints, seed=seed, **thief_options)
            name = thief.strategy.name if defence.kind == "none" else (
                f"{thief.strategy.name} · {defence}")
            monitor = None if monitor_delta is None else PradaMonitor(monitor_delta)
            hook = None if on_round is None else _named(on_round, name)
            runs.append(thief(target, pool, x_eval, y_eval, reference=reference,
                              monitor=monitor, client_id=name, defence=str(defence),
                              on_round=hook))
    template = KnockoffNets(surrogate, budget=budget, rounds=rounds, checkpoints=checkpoints,
                            **thief_options)
    return ExtractionResult(
        runs=runs, victim_accuracy=victim_accuracy, n_eval=int(x_eval.shape[0]),
        victim={"name": getattr(victim, "name", None) or type(victim).__name__,
                "num_classes": victim.num_classes,
                "answers": "labels" if is_label_only(victim) else "scores"},
        settings={"budget": budget, "checkpoints": template.checkpoints,
                  "strategies": list(strategies), "defences": [str(d) for d in parsed],
                  "monitor_delta": monitor_delta, "seed": seed,
                  "evaluation_queries": int(x_eval.shape[0]),
                  "training": {"epochs": template.epochs, "min_steps": template.min_steps,
                               "batch_size": template.batch_size, "lr": template.lr,
                               "labels": template.labels}},
        seconds=time.perf_counter() - started)


def _named(hook: RoundHook, name: str) -> Callable[[CurvePoint], None]:
    def call(point: CurvePoint) -> None:
        hook(name, point)

    return call
