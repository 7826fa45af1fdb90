"""``rampart.audit``: the worst case over a suite of attacks, with diagnostics, per threat.

The runner streams the data batch by batch. For each batch and each threat point (a norm
and one eps), the suite runs as a cascade (``cascade.py``); only small per-sample arrays and
a few gallery images are kept (``records.py``), and each finished batch is checkpointed so
an interrupted audit resumes where it stopped. Before the attacks, ``preflight`` checks for
gradient masking on a sample of the first batch and may swap in an escalated model (EOT,
BPDA) for the white-box attacks; after them, ``postflight`` checks the attacks' own
behaviour. With the diagnostics off, modules that declare themselves non-differentiable or
random (``escalation.declarations``) still get BPDA or EOT. Under ``torchrun`` every
process takes every n-th batch and the records are gathered into one report
(``distributed.py``). Seeds depend on the batch, not the process, so one process and several
give the same numbers.

Threats with weaker knowledge (``score``, ``decision``, ``transfer``) are audited with the
black-box attacks of ``suites.black_box_suite`` on the model's outputs alone (a
``BlackBoxClassifier`` or any ``Classifier``); transfer threats craft on the ``surrogate``.
Their robust accuracy is an upper bound that a white-box audit can only lower, and the
report says so.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rampart import __version__
from rampart.attacks import FAB, Square
from rampart.attacks.apgd import APGDDLR
from rampart.data import Dataset
from rampart.errors import ConfigError, InputError
from rampart.evaluate import distributed
from rampart.evaluate.audit_report import AuditReport, build_report
from rampart.evaluate.cascade import run_cascade
from rampart.evaluate.escalation import declared_attack_model, escalations
from rampart.evaluate.fingerprint import DataFingerprint, weights_fingerprint
from rampart.evaluate.records import BatchRecord, Checkpoint, PointRecord
from rampart.evaluate.suites import (
    SUITES,
    Suite,
    SuiteAttack,
    black_box_suite,
    family_key,
    get_suite,
)
from rampart.models import Classifier
from rampart.threat import ThreatModel

ProgressFn = Callable[[int, str], None]

DIAGNOSTIC_SAMPLES = 128  # samples of the first batch the gradient-masking checks look at


@dataclass
class AuditOptions:
    """How an audit runs; everything here is recorded in its report."""

    suite: str | Suite = "standard"
    seed: int = 0
    batch_size: int = 500
    limit: int | None = None
    diagnostics: bool = True
    curve_samples: int = 100  # samples of the first batch for the minimal-perturbation curve
    gallery: int = 6  # adversarial examples kept per threat point for the report


def threat_points(threats: ThreatModel | Sequence[ThreatModel]) -> list[ThreatModel]:
    """Every (threat, eps) pair as a single-eps threat, in order, without duplicates."""
    if isinstance(threats, ThreatModel):
        threats = [threats]
    if not threats:
        raise ConfigError("an audit needs at least one threat model, e.g. "
                          "ThreatModel(norm='linf', eps=0.3) or --norm linf --eps 0.3.")
    points: dict[str, ThreatModel] = {}
    for threat in threats:
        if not isinstance(threat, ThreatModel):
            raise ConfigError(f"threats must be rampart.ThreatModel objects, got "
                              f"{type(threat).__name__}.")
        for eps in threat.eps_values:
            point = threat.at(eps)
            points.setdefault(point_key(point), point)
    return list(points.values())


def point_key(threat: ThreatModel) -> str:
    """A stable name for a single-eps threat, e.g. ``linf@0.3``, ``l2@1.5/targeted=3`` or,
    below white-box knowledge, ``linf@0.3/score``."""
    key = f"{threat.norm}@{threat.single_eps:g}"
    if threat.is_targeted:
        key = f"{key}/targeted={threat.targeted}"
    return key if threat.knowledge == "white-box" else f"{key}/{threat.knowledge}"


# ---------------------------------------------------------------------- data streaming
def iter_batches(data: Any, batch_size: int, limit: int | None
                 ) -> Iterator[tuple[int, Any, Any]]:
    """``(index, x, y)`` batches from a Dataset, an ``(x, y)`` pair or an iterable of pairs.

    Arrays are sliced lazily, so a memory-mapped dataset is never read whole; an iterable
    (e.g. a DataLoader) is consumed batch by batch as it yields.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}.")
    if isinstance(data, Dataset):
        data = (data.x, data.y)
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        x, y = data
        if y is None:
            raise InputError("the audit needs labels; the data has none.")
        n = x.shape[0] if limit is None else min(limit, x.shape[0])
        if len(y) < n:
            raise InputError(f"the data has {x.shape[0]} inputs but {len(y)} labels.")
        for index, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            yield index, x[start:stop], y[start:stop]
        return
    if not isinstance(data, Iterable):
        raise InputError(
            f"audit data must be a rampart Dataset, an (x, y) pair of arrays or an iterable of "
            f"(x, y) batches such as a DataLoader; got {type(data).__name__}."
        )
    seen = 0
    for index, batch in enumerate(data):
        if not (isinstance(batch, tuple | list) and len(batch) >= 2):
            raise InputError("each batch of the audit data must be an (x, y) pair; got "
                             f"{type(batch).__name__}.")
        x, y = batch[0], batch[1]
        if limit is not None:
            x, y = x[: limit - seen], y[: limit - seen]
        if len(x) == 0:
            return
        seen += len(x)
        yield index, x, y
        if limit is not None and seen >= limit:
            return


# ---------------------------------------------------------------------- the runner
def audit(
    model: Classifier,
    data: Any,
    threats: ThreatModel | Sequence[ThreatModel],
    suite: str | Suite = "standard",
    *,
    options: AuditOptions | None = None,
    checkpoint_dir: str | None = None,
    fresh: bool = False,
    progress: ProgressFn | None = None,
    model_name: str | None = None,
    data_name: str | None = None,
    surrogate: Classifier | Sequence[Classifier] | None = None,
    **settings: Any,
) -> AuditReport:
    """Audit ``model`` on ``data`` under ``threats`` with ``suite``; returns the report.

    ``settings`` are :class:`AuditOptions` fields (``seed``, ``batch_size``, ``limit``, ...).
    ``checkpoint_dir`` makes the audit resumable: finished batches are saved there and
    skipped when the same audit runs again (``fresh=True`` discards them). ``surrogate``
    (the attacker's own model, or a list of models) is what ``knowledge: transfer`` threats
    craft their examples on.
    """
    if not isinstance(model, Classifier):
        raise InputError(f"audit takes a rampart.Classifier, got {type(model).__name__}; wrap "
                         "the module with rampart.Classifier(net, bounds=...).")
    opts = options or AuditOptions(suite=suite)
    unknown = set(settings) - set(AuditOptions.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"audit() does not take {', '.join(sorted(unknown))}; it takes "
                          f"{', '.join(AuditOptions.__dataclass_fields__)}.")
    for name, value in settings.items():
        setattr(opts, name, value)
    opts.suite = suite if options is None else opts.suite
    chosen = get_suite(opts.suite)
    points = threat_points(threats)
    runner = _Runner(model, points, chosen, opts, progress, surrogate)
    started = time.perf_counter()
    dist = distributed.context()
    fingerprint = DataFingerprint()
    weights_fp = _model_fingerprint(model)
    checkpoint = None
    if checkpoint_dir is not None:
        key = {"rampart": __version__, "weights": weights_fp, "suite": chosen.name,
               "seed": opts.seed, "batch_size": opts.batch_size, "limit": opts.limit,
               "threats": [point_key(p) for p in points], "world_size": dist.world_size}
        if runner.surrogate is not None:
            key["surrogate"] = weights_fingerprint(runner.surrogate)
        checkpoint = Checkpoint(checkpoint_dir, key, fresh=fresh and dist.rank == 0)
    records: list[BatchRecord] = []
    resumed = 0
    for index, xb, yb in iter_batches(data, opts.batch_size, opts.limit):
        fingerprint.update(xb, yb)
        if index == 0:
            runner.prepare(xb, yb)
        if index % dist.world_size != dist.rank:
            continue
        record = checkpoint.load(index) if checkpoint is not None else None
        if record is None:
            record = runner.run_batch(index, xb, yb)
            if checkpoint is not None:
                checkpoint.save(record)
        else:
            resumed += 1
        records.append(record)
        if progress is not None:
            progress(len(record), f"batch {index + 1}")
    if not runner.prepared:
        raise InputError("the audit data is empty; check --data and --limit.")
    records = dist.gather(records)
    data_fp = fingerprint.hexdigest()
    return build_report(
        records=sorted(records, key=lambda r: r.index),
        points={point_key(p): p for p in points},
        suite=chosen,
        attacks_by_norm={norm: [a.key for a in attacks]
                         for norm, attacks in runner.attacks.items()},
        budgets={a.key: a.budget for attacks in runner.attacks.values() for a in attacks},
        notes=runner.notes,
        preflight=runner.preflight_diagnostics,
        options=opts,
        model_info={"name": model_name or _model_label(model),
                    "weights_fingerprint": weights_fp, "num_classes": model.num_classes,
                    "bounds": list(model.bounds), "output": model.output,
                    "escalation": runner.escalation, **runner.access_info()},
        data_info={"name": data_name, "fingerprint": data_fp},
        seconds=time.perf_counter() - started,
        resumed_batches=resumed,
        world_size=dist.world_size,
    )


class _Runner:
    """The per-batch work of one audit, with what the first batch taught it."""

    def __init__(self, model: Classifier, points: list[ThreatModel], suite: Suite,
                 opts: AuditOptions, progress: ProgressFn | None,
                 surrogate: Classifier | Sequence[Classifier] | None = None) -> None:
        self.model, self.points, self.suite, self.opts = model, points, suite, opts
        self.progress = progress
        # white-box threats need gradients; the others only the model's outputs
        self.white = [p for p in points if p.knowledge == "white-box"]
        if self.white and not model.differentiable:
            raise ConfigError(
                f"a white-box threat ({point_key(self.white[0])}) needs gradients, but "
                f"{type(model).__name__} can only be queried; set knowledge: score, decision "
                "or transfer on the threats of a black-box target.")
        needs_surrogate = any(p.knowledge == "transfer" for p in points)
        self.surrogate = _surrogate(surrogate) if needs_surrogate else None
        self.prepared = False
        self.attack_model: Classifier = model
        self.preflight_diagnostics: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.escalation: list[str] = []
        self.attacks: dict[str, list[SuiteAttack]] = {}
        self._gallery_kept: dict[str, int] = {}
        self._logit_free = False
        self._needs_black_box = False

    def _tensors(self, xb: Any, yb: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.model.to_tensor(xb)
        self.model.check_inputs(x)
        return x, self.model.to_labels(yb, x.shape[0])

    def prepare(self, xb: Any, yb: Any) -> None:
        """Gradient-masking preflight on the first batch, then the attack list per norm."""
        x, y = self._tensors(xb, yb)
        if not self.white:  # nothing differentiates through the model: no escalation
            self.attack_model = self.model
        elif self.opts.diagnostics:
            from rampart.evaluate.diagnostics import preflight

            first = self.white[0]
            pre = preflight(self.model, x[:DIAGNOSTIC_SAMPLES], y[:DIAGNOSTIC_SAMPLES], first,
                            seed=self.opts.seed)
            self.preflight_diagnostics = [d.to_dict() for d in pre.diagnostics]
            self.attack_model = pre.attack_model
            self._logit_free = bool(pre.logit_free)
            self._needs_black_box = bool(pre.needs_black_box)
            self.escalation = [d["escalation"] for d in self.preflight_diagnostics
                               if d.get("escalation")]
        else:  # no checks, but what the model declares about itself still holds
            self.attack_model = declared_attack_model(self.model)
            self.escalation = escalations(self.attack_model)
        for point in self.points:
            family = family_key(point)
            if family in self.attacks:
                continue
            suite = self.suite if point.knowledge == "white-box" else black_box_suite(
                self.suite, point.knowledge, self.surrogate)
            attacks, notes = suite.for_model(self.model.num_classes, point.norm)
            self.notes += notes
            if point.knowledge == "white-box":
                attacks = self._escalate(attacks, point.norm)
            if not attacks:
                raise ConfigError(
                    f"no attack of the {suite.name} suite works for this model under "
                    f"{family} ({'; '.join(notes)})."
                )
            self.attacks[family] = attacks
        self.notes += self._black_box_notes()
        self.prepared = True

    def _black_box_notes(self) -> list[str]:
        """What a reader of a black-box audit must know: which attacks ran, and that the
        numbers are upper bounds."""
        kinds = list(dict.fromkeys(p.knowledge for p in self.points if p not in self.white))
        if not kinds:
            return []
        ran = "; ".join(f"{family}: {', '.join(a.key for a in attacks)}"
                        for family, attacks in self.attacks.items() if "/" in family)
        return [f"Black-box audit (knowledge: {', '.join(kinds)}): only the model's "
                f"{'labels' if kinds == ['decision'] else 'outputs'} were used ({ran}). Its "
                "robust accuracy is an upper bound on the true robustness; a white-box audit "
                "(gradients) can only lower it."]

    def access_info(self) -> dict[str, Any]:
        """How the audit could reach the model, for the report (nothing for a white-box
        audit, whose report stays as it was)."""
        if len(self.white) == len(self.points) and self.model.differentiable:
            return {}
        info: dict[str, Any] = {"knowledge": sorted({p.knowledge for p in self.points})}
        if not self.model.differentiable:
            info["black_box_target"] = getattr(self.model, "name", type(self.model).__name__)
            info["queries"] = getattr(self.model, "queries", None)
        if self.surrogate is not None:
            info["surrogate"] = {"name": _model_label(self.surrogate),
                                 "weights_fingerprint": weights_fingerprint(self.surrogate)}
        return info

    def _escalate(self, attacks: list[SuiteAttack], norm: str) -> list[SuiteAttack]:
        keys = {a.key for a in attacks}
        if self._logit_free and self.model.num_classes >= 3 and not keys & {"apgd-dlr",
                                                                               "apgd-dlr-x5"}:
            attacks = [SuiteAttack("apgd-dlr", lambda seed: APGDDLR(steps=100, seed=seed),
                                   "100 steps (added: outputs look like probabilities)",
                                   min_classes=3), *attacks]
            self.notes.append("APGD-DLR added: its loss does not depend on the logits' scale.")
        if self._needs_black_box and norm in ("linf", "l2") and not any(a.black_box
                                                                          for a in attacks):
            attacks = [*attacks, SuiteAttack(
                "square", lambda seed: Square(n_queries=5000, seed=seed),
                "5000 queries (added: white-box gradients are not trustworthy)",
                black_box=True, norms=("linf", "l2"))]
            self.notes.append("Square added: the white-box attacks' gradients cannot be "
                              "trusted on this model.")
        return attacks

    def run_batch(self, index: int, xb: Any, yb: Any) -> BatchRecord:
        x, y = self._tensors(xb, yb)
        points: dict[str, PointRecord] = {}
        extras: dict[str, Any] = {}
        predictions = None
        # Ascending eps per norm and target mode: what breaks at a smaller eps is broken at
        # a larger one with the same point, so each cascade only attacks what is left.
        order = sorted(self.points, key=lambda p: (p.norm, str(p.targeted), p.single_eps))
        previous: dict[tuple[str, str], Any] = {}
        for point in order:
            key = point_key(point)
            family = (point.norm, str(point.targeted))
            if self.progress is not None:
                self.progress(0, f"batch {index + 1}: {key}")
            out = run_cascade(self.model, x, y, point, self.attacks[family_key(point)],
                              seed=self.opts.seed, batch_index=index,
                              attack_model=self.attack_model,
                              prior=previous.get(family) if not point.is_targeted else None)
            previous[family] = out
            predictions = out.clean_predictions
            # gallery images only until enough are kept: memory must not grow with the data
            room = max(0, self.opts.gallery - self._gallery_kept.get(key, 0))
            broken = (out.broken_by >= 0).nonzero().flatten()[:room]
            self._gallery_kept[key] = self._gallery_kept.get(key, 0) + int(broken.numel())
            gallery = [{"x": _np(x[i]), "x_adv": _np(out.x_adv[i]), "label": int(y[i]),
                        "adv_prediction": int(out.adv_predictions[i]),
                        "confidence": float(out.adv_confidence[i]),
                        "norm": float(out.norms[i]),
                        "attack": self.attacks[family_key(point)][int(out.broken_by[i])].key}
                       for i in broken.tolist()]
            points[key] = PointRecord(
                robust=_np(out.robust), broken_by=_np(out.broken_by),
                adv_predictions=_np(out.adv_predictions),
                adv_confidence=_np(out.adv_confidence).astype(np.float32),
                norms=_np(out.norms).astype(np.float32),
                stats=[vars(s) for s in out.stats], gallery=gallery,
            )
            if index == 0 and self.opts.diagnostics and point.knowledge == "white-box":
                extras.setdefault("postflight", {})[key] = self._postflight(x, y, point, out)
        assert predictions is not None  # threat_points() never returns an empty list
        points = {point_key(p): points[point_key(p)] for p in self.points}  # the user's order
        if index == 0 and self.opts.curve_samples > 0 and self.white:
            extras["curves"] = self._curves(x, y)
        return BatchRecord(index=index, labels=_np(y), clean_predictions=_np(predictions),
                           points=points, extras=extras)

    def _postflight(self, x: torch.Tensor, y: torch.Tensor, point: ThreatModel,
                    out: Any) -> list[dict[str, Any]]:
        from rampart.evaluate.diagnostics import AttackOutcome, postflight

        n = min(DIAGNOSTIC_SAMPLES, x.shape[0])
        attacks = self.attacks[point.norm]
        outcomes = [AttackOutcome(name=a.key, black_box=a.black_box,
                                  broke=(out.broken_by[:n] == i))
                    for i, a in enumerate(attacks)]
        found = postflight(self.attack_model, x[:n], y[:n], point,
                           clean_correct=out.clean_correct[:n], robust=out.robust[:n],
                           outcomes=outcomes, seed=self.opts.seed,
                           budget=self.suite.name if self.suite.name in SUITES else "standard")
        return [d.to_dict() for d in found]

    def _curves(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Minimal perturbations (FAB) per norm on the first clean-correct samples."""
        with torch.no_grad(), self.model.attacking():
            correct = (self.model.logits(x).argmax(dim=1) == y).nonzero().flatten()
        rows = correct[: self.opts.curve_samples]
        curves: dict[str, Any] = {}
        if rows.numel() == 0:
            return curves
        for norm in dict.fromkeys(p.norm for p in self.white):
            largest = max(p.single_eps for p in self.white if p.norm == norm)
            threat = ThreatModel(norm=norm, eps=largest)
            started = time.perf_counter()
            result = FAB(steps=100, seed=self.opts.seed)(self.attack_model, x[rows], y[rows],
                                                         threat)
            # re-check on the user's model: a point that does not fool it has no size
            with torch.no_grad(), self.model.attacking():
                fooled = self.model.logits(result.x_adv).argmax(dim=1) != y[rows]
            sizes = torch.where(fooled & result.success, result.norms,
                                torch.full_like(result.norms, float("inf")))
            curves[norm] = {"attack": "fab (100 steps, minimum norm)",
                            "samples": int(rows.numel()),
                            "sample_clean_accuracy": float(correct.numel() / x.shape[0]),
                            "norms": [float(v) for v in sizes.tolist()],
                            "seconds": time.perf_counter() - started}
        return curves


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _surrogate(surrogate: Classifier | Sequence[Classifier] | None) -> Classifier:
    """The surrogate transfer threats craft on, as one ``Classifier`` (a list is an
    ensemble); a clear error when there is none."""
    from rampart.attacks.transfer import as_surrogate

    built = as_surrogate(surrogate)
    if built is None:
        raise ConfigError(
            "a transfer threat needs the attacker's surrogate model: pass "
            "audit(..., surrogate=rampart.Classifier(net, ...)) or set surrogate: in the audit "
            "config (CLI: --surrogate).")
    return built


def _model_label(model: Classifier) -> str:
    net = getattr(model, "net", None)
    return type(net).__name__ if net is not None else getattr(model, "name", "black-box model")


def _model_fingerprint(model: Classifier) -> str:
    """The weights' fingerprint, or for a model without weights (a black box) one of its
    name, so checkpoints of different targets never mix."""
    if getattr(model, "net", None) is not None:
        return weights_fingerprint(model.net)
    name = f"black-box:{_model_label(model)}"
    return hashlib.sha256(name.encode()).hexdigest()[:16]
