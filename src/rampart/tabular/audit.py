"""The tabular audit: robust accuracy with and without constraint satisfaction.

One constrained attack and the same attack without constraints run on the same rows and
budget. The report gives clean accuracy and three robust accuracies:

- *unconstrained*: what an audit that ignores the schema would report (every adversarial
  counts, valid or not);
- *unconstrained, valid only*: the same adversarials, counting only those that satisfy
  every constraint (immutable, integer, one-hot, bounds, relations);
- *unconstrained, repaired afterwards*: the unconstrained adversarials projected onto the
  schema after the attack (the "attack, then project" baseline), counting those that stay
  adversarial;
- *constrained*: the honest number, the pointwise worst case over every valid adversarial
  found (by the constrained attack, or by the unconstrained one as it is or repaired).

and how many unconstrained adversarials break each constraint, so a team sees how much of
the "vulnerability" an unconstrained attack reports is physically impossible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rampart.attacks.base import Attack
from rampart.attacks.losses import is_success
from rampart.errors import ConfigError
from rampart.models import Classifier
from rampart.tabular.base import check_columns
from rampart.tabular.gradient import ConstrainedAPGD
from rampart.tabular.region import ConstrainedRegion, any_violation, violations
from rampart.tabular.report import TabularAuditReport
from rampart.tabular.schema import FeatureSchema, load_schema
from rampart.tabular.search import ConstrainedSearch
from rampart.threat import ThreatModel


@dataclass
class AttackPair:
    """A constrained attack and its unconstrained twin (same budget and settings)."""

    constrained: Attack
    unconstrained: Attack
    knowledge: str = "white-box"


def default_pair(model: Classifier, schema: FeatureSchema, *, steps: int = 100,
                 max_queries: int = 1000, seed: int = 0) -> AttackPair:
    """APGD with repair for differentiable models, the constrained search otherwise."""
    if model.differentiable:
        return AttackPair(ConstrainedAPGD(schema, steps=steps, seed=seed),
                          ConstrainedAPGD(schema, steps=steps, constrained=False, seed=seed))
    knowledge = "decision" if getattr(model, "label_only", False) else "score"
    return AttackPair(ConstrainedSearch(schema, max_queries=max_queries, seed=seed),
                      ConstrainedSearch(schema, max_queries=max_queries, constrained=False,
                                        seed=seed), knowledge)


def tabular_audit(
    model: Classifier,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    schema: FeatureSchema | dict | str,
    eps: float,
    *,
    pair: AttackPair | None = None,
    steps: int = 100,
    max_queries: int = 1000,
    seed: int = 0,
    model_name: str = "model",
    data_name: str = "data",
) -> TabularAuditReport:
    """Audit ``model`` on rows ``x`` (schema column order) with labels ``y`` at budget ``eps``
    (linf, in units of each feature's scale). ``pair`` overrides :func:`default_pair`."""
    schema = load_schema(schema)
    if eps <= 0:
        raise ConfigError(f"eps must be positive, got {eps}.")
    xt, _ = model.to_tensor(x)
    check_columns(schema, xt)
    yt = model.to_labels(y, xt.shape[0])
    pair = pair or default_pair(model, schema, steps=steps, max_queries=max_queries, seed=seed)
    threat = ThreatModel(norm="linf", eps=float(eps), knowledge=pair.knowledge)
    runs = {}
    for label, attack in (("constrained", pair.constrained), ("unconstrained", pair.unconstrained)):
        result = attack(model, xt, yt, threat)
        found = violations(schema, xt, result.x_adv)
        invalid = any_violation(found)
        runs[label] = (attack, result, found, invalid)
    c_att, c_res, _, c_invalid = runs["constrained"]
    u_att, u_res, u_found, u_invalid = runs["unconstrained"]
    correct = c_res.clean_correct  # the attack's own clean pass: no second one on the target
    c_broken = c_res.success & correct & ~c_invalid
    u_broken = u_res.success & correct
    u_valid = u_broken & ~u_invalid
    repaired_broken = _repaired_afterwards(model, schema, xt, yt, u_res.x_adv,
                                           float(eps)) & u_broken
    n = int(xt.shape[0])
    share = lambda mask: float(mask.float().mean())  # noqa: E731
    adversarials = int(u_broken.sum())
    rows = [_attack_row("constrained", c_att, c_res, c_broken, correct, c_invalid),
            _attack_row("unconstrained", u_att, u_res, u_broken, correct, u_invalid)]
    return TabularAuditReport(
        model=model_name, data=data_name, samples=n, eps=float(eps), seed=seed,
        schema_summary=_schema_summary(schema),
        clean_accuracy=share(correct),
        robust_unconstrained=share(correct & ~u_broken),
        robust_unconstrained_valid=share(correct & ~u_valid),
        robust_repaired_afterwards=share(correct & ~(u_valid | repaired_broken)),
        robust_constrained=share(correct & ~(c_broken | u_valid | repaired_broken)),
        unconstrained_adversarials=adversarials,
        invalid_adversarials=int((u_broken & u_invalid).sum()),
        violations_by_constraint={k: int((v & u_broken).sum()) for k, v in u_found.items()},
        attacks=rows,
    )


def _repaired_afterwards(model: Classifier, schema: FeatureSchema, x: torch.Tensor,
                         y: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """Rows where the unconstrained adversarial, repaired onto the schema after the attack,
    is valid and still fools the model (the "attack, then project" baseline)."""
    region = ConstrainedRegion(schema, x, eps)
    fixed = region.repair(x_adv)
    with torch.no_grad():
        logits = model.predict_logits(fixed)
    return is_success(logits, y, None) & ~any_violation(region.violations(fixed))


def _attack_row(kind: str, attack: Attack, result: Any, broken: torch.Tensor,
                correct: torch.Tensor, invalid: torch.Tensor) -> dict[str, Any]:
    success = result.success & correct
    return {
        "attack": attack.name, "kind": kind,
        "success_rate": float(broken.float().sum() / correct.float().sum().clamp_min(1)),
        "invalid_adversarials": int((success & invalid).sum()),
        "mean_queries": float(result.queries.float().mean()),
        "runtime_s": float(result.runtime),
        "config": {k: v for k, v in attack.config().items() if isinstance(v, int | float | str)},
    }


def _schema_summary(schema: FeatureSchema) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for f in schema.features:
        kinds[f.type] = kinds.get(f.type, 0) + 1
    return {"features": len(schema.features), "columns": len(schema.columns),
            "immutable": [f.name for f in schema.features if not f.mutable],
            "types": kinds, "relations": [r.text for r in schema.relations]}


__all__ = ["AttackPair", "default_pair", "tabular_audit"]
