"""The served model: network, preprocessing defences and detectors, loaded once and frozen.

``load_guarded_model`` builds it from a ``GuardConfig`` (weights through ``rampart.loading``:
safetensors or ``weights_only`` checkpoints, never a pickle; detectors through
``Detector.load``). ``GuardedModel.run`` is the synchronous part of a prediction: the
preprocessed model's probabilities and each detector's verdict.

Concurrency: the network is put in eval mode with ``requires_grad`` off for good before the
first request (``freeze``), and ``run`` calls ``Classifier.logits`` and the detectors'
``logits_and_scores`` directly under ``torch.no_grad()``, so no request changes the module's
state and several inference threads can share one ``GuardedModel``; detector passes (which
may hook a layer) take turns under a lock. A reload builds a new one and swaps the
reference; requests in flight keep the one they started with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import torch
from torch import nn

from rampart.defenses.detectors import Detector
from rampart.defenses.jpeg import JPEGCompression
from rampart.defenses.preprocessing import (
    BitDepthReduction,
    GaussianNoise,
    MedianSmoothing,
    Preprocessed,
)
from rampart.errors import ConfigError, ModelOutputError
from rampart.loading import load_model
from rampart.models import Classifier
from rampart.serve.config import GuardConfig, PreprocessingStep, check_files


@dataclass
class BatchResult:
    """What the model and the detectors said about one validated batch."""

    probabilities: torch.Tensor            # (N, C), CPU
    labels: torch.Tensor                   # (N,), CPU
    flags: list[list[str]]                 # per input: names of detectors that flagged it
    rejected: list[bool]                   # per input: flagged by a detector with policy reject


@dataclass
class GuardedModel:
    """A frozen classifier (preprocessing inside) and its loaded detectors."""

    classifier: Classifier
    detectors: list[tuple[str, str, Detector]]  # (name, policy, detector)
    version: int
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    _detector_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        # frozen for good, so these never change; Classifier looks them up at every call
        self._device, self._dtype = self.classifier.device, self.classifier.dtype

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def run(self, x: torch.Tensor) -> BatchResult:
        """Probabilities, labels and detector verdicts for a validated batch (CPU tensor).

        With detectors, the logits come from the first detector's own pass
        (``logits_and_scores``), so the model runs once for prediction and detection. Detector
        passes hold a lock: the feature-reading detectors hook a layer for the duration of a
        pass, and two concurrent passes would read each other's activations.
        """
        model = self.classifier
        x = x.to(device=self._device, dtype=self._dtype)
        n = x.shape[0]
        flags: list[list[str]] = [[] for _ in range(n)]
        rejected = [False] * n
        logits = None
        with torch.no_grad():
            if self.detectors:
                with self._detector_lock:
                    for name, policy, detector in self.detectors:
                        threshold = detector.require_threshold()
                        parts = [detector.logits_and_scores(c) for c in x.split(model.batch_size)]
                        if logits is None:
                            logits = torch.cat([p[0] for p in parts])
                        hits = (torch.cat([p[1] for p in parts]) > threshold).cpu().tolist()
                        for i, hit in enumerate(hits):
                            if hit:
                                flags[i].append(name)
                                rejected[i] = rejected[i] or policy == "reject"
            if logits is None:
                logits = torch.cat([model.logits(c) for c in x.split(model.batch_size)])
            probs = logits.float().softmax(dim=1).cpu()
        if not bool(torch.isfinite(probs).all()):
            raise ModelOutputError("the model returned NaN or infinite logits")
        return BatchResult(probs, probs.argmax(dim=1), flags, rejected)


def build_preprocessor(step: PreprocessingStep, bounds: tuple[float, float]) -> nn.Module:
    """The ``rampart.defenses`` preprocessor a config step names."""
    if step.name == "bit-depth":
        return BitDepthReduction(int(step.bits or 0), bounds=bounds)
    if step.name == "median":
        return MedianSmoothing(step.size or 3, bounds=bounds)
    if step.name == "gaussian-noise":
        return GaussianNoise(float(step.sigma or 0.0), bounds=bounds)
    return JPEGCompression(step.quality or 75, bounds=bounds)


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no gradients, for good: what makes sharing across threads safe."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_guarded_model(config: GuardConfig, version: int = 1) -> GuardedModel:
    """Load the model, its preprocessing and detectors from ``config``; warm it up once."""
    check_files(config)
    settings = config.model
    bounds = (float(settings.bounds[0]), float(settings.bounds[1]))
    net = load_model(settings.spec, settings.weights, device=settings.device)
    if settings.dtype == "float64":
        net = net.double()
    steps = [build_preprocessor(s, bounds) for s in config.preprocessing]
    served = freeze(Preprocessed(net, *steps) if steps else net)
    classifier = Classifier(served, bounds=bounds, mean=settings.mean, std=settings.std,
                            input_shape=settings.input_shape, output=settings.output,
                            batch_size=config.limits.max_batch)
    _ = classifier.num_classes  # one probe pass: learns the classes and checks the outputs
    detectors = []
    for det in config.detectors:
        detector = Detector.load(det.path, classifier)
        if detector.threshold is None:
            raise ConfigError(f"the detector {det.path} has no threshold; calibrate it "
                              "(detector.calibrate(x_clean, fpr=0.05)) and save it again.")
        detectors.append((det.label, det.policy, detector))
    return GuardedModel(classifier, detectors, version)
