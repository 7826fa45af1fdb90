"""The guard service's configuration: one YAML (or JSON) file, validated by pydantic.

``load_guard_config(path)`` reads it with ``rampart.config_files`` (so every problem is listed
in one ``ConfigError``) and resolves relative file paths against the file's folder, so a
config travels with its weights, detectors and key store. ``EXAMPLE`` is the example a missing
file prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rampart.config_files import read_config_file, validate
from rampart.errors import ConfigError

EXAMPLE = """\
model:
  spec: rampart.zoo:digits_cnn          # path/to/net.py:build, package.module:build or TorchScript
  weights: digits.safetensors
  input_shape: [1, 8, 8]
  bounds: [0.0, 1.0]
limits: {max_batch: 64, max_request_bytes: 1000000}
preprocessing:                          # optional defences, applied before the model
  - {name: bit-depth, bits: 5}
detectors:                              # optional files written by Detector.save
  - {path: squeezing.safetensors, policy: flag}     # flag | reject
outputs: {round: 4, top_k: 3}
keys: {store: keys.json, rate_per_minute: 600, burst: 20}
audit_log: {url: "sqlite:///guard-audit.db"}
server: {host: 127.0.0.1, port: 8000}
"""

_STRICT = ConfigDict(extra="forbid")
SINGLE_PROCESS = ("the guard serves from one process: its rate limits, query budgets, monitors "
                  "and audit buffer live in that process's memory, so run one guard per "
                  "host/port behind a load balancer, each with its own key budgets, or leave "
                  "workers at 1")
PREPROCESSORS = ("bit-depth", "median", "gaussian-noise", "jpeg")


class ModelSettings(BaseModel):
    """The served model: how to build it, its weights and the inputs it takes."""

    model_config = _STRICT

    spec: str = Field(min_length=1)
    weights: str | None = None
    input_shape: list[int] = Field(min_length=1)
    bounds: tuple[float, float] = (0.0, 1.0)
    dtype: Literal["float32", "float64"] = "float32"
    mean: list[float] | None = None
    std: list[float] | None = None
    output: Literal["logits", "probabilities"] = "logits"
    device: str = "cpu"

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, shape: list[int]) -> list[int]:
        if any(s < 1 for s in shape):
            raise ValueError(f"every dimension must be at least 1, got {shape}")
        return shape

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not bounds[0] < bounds[1]:
            raise ValueError(f"bounds must be [low, high] with low < high, got {list(bounds)}")
        return bounds


class Limits(BaseModel):
    """Size limits on one request."""

    model_config = _STRICT

    max_batch: int = Field(256, ge=1)
    max_request_bytes: int = Field(4_000_000, ge=64)


class PreprocessingStep(BaseModel):
    """One input-preprocessing defence from ``rampart.defenses.preprocessing`` by name."""

    model_config = _STRICT

    name: Literal["bit-depth", "median", "gaussian-noise", "jpeg"]
    bits: int | None = None
    size: int | None = None
    sigma: float | None = None
    quality: int | None = None

    @model_validator(mode="after")
    def _arguments(self) -> PreprocessingStep:
        needs = {"bit-depth": "bits", "gaussian-noise": "sigma"}.get(self.name)
        if needs and getattr(self, needs) is None:
            raise ValueError(f"{self.name} needs {needs}, e.g. {{name: {self.name}, {needs}: "
                             f"{5 if needs == 'bits' else 0.1}}}")
        allowed = {"bit-depth": {"bits"}, "median": {"size"}, "gaussian-noise": {"sigma"},
                   "jpeg": {"quality"}}[self.name]
        extra = [k for k in ("bits", "size", "sigma", "quality")
                 if getattr(self, k) is not None and k not in allowed]
        if extra:
            raise ValueError(f"{self.name} takes only {', '.join(sorted(allowed))}, not "
                             f"{', '.join(extra)}")
        return self


class DetectorSettings(BaseModel):
    """A saved detector (``Detector.save``) and what to do with the inputs it flags."""

    model_config = _STRICT

    path: str
    name: str | None = None
    policy: Literal["flag", "reject"] = "flag"

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


class Outputs(BaseModel):
    """What the answer shows: rounded scores, only the top k, or only labels."""

    model_config = _STRICT

    round: int | None = Field(None, ge=0, le=12)
    top_k: int | None = Field(None, ge=1)
    labels_only: bool = False


class KeySettings(BaseModel):
    """The API key store and the default per-key limits."""

    model_config = _STRICT

    store: str = "keys.json"
    rate_per_minute: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)
    query_budget: int | None = Field(None, ge=1)
    usage_path: str | None = None  # keeps the inputs counted per key across restarts
    admin_key_ids: list[str] = Field(default_factory=list)

    @field_validator("rate_per_minute", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        """``600``, ``"600/min"``, ``"10/s"`` or ``"5000/h"``: inputs per minute."""
        if isinstance(value, str):
            from rampart.serve.limits import parse_rate

            try:
                return parse_rate(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


class ExtractionSettings(BaseModel):
    """The PRADA extraction monitor per key."""

    model_config = _STRICT

    enabled: bool = True
    delta: float = Field(0.9, gt=0, lt=1)
    min_queries: int = Field(100, ge=10)
    # inputs between two Shapiro-Wilk tests of a key's stream: a flag comes at most this many
    # inputs late, and each test costs about as much as a small model's forward pass
    test_every: int = Field(50, ge=1)
    action: Literal["flag", "block"] = "flag"
    state_path: str | None = None  # keeps every key's history and flag across restarts


class DriftSettings(BaseModel):
    """Drift monitoring against a reference ``.npz`` (``x``, optionally ``confidences``)."""

    model_config = _STRICT

    reference: str
    window: int = Field(500, ge=10)
    every: int = Field(100, ge=1)
    alpha: float = Field(0.01, gt=0, lt=1)
    permutations: int = Field(200, ge=10)


class AuditLogSettings(BaseModel):
    """Where every decision is recorded (SQLAlchemy URL) and where unwritten ones spill."""

    model_config = _STRICT

    url: str = "sqlite:///guard-audit.db"
    spill_path: str | None = None
    buffer_limit: int = Field(100_000, ge=1)
    flush_interval: float = Field(0.1, ge=0, le=10)  # seconds entries gather before a write


class ServerSettings(BaseModel):
    """uvicorn and the bounded inference pool."""

    model_config = _STRICT

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = 1
    inference_threads: int = Field(2, ge=1, le=64)
    queue_size: int = Field(64, ge=1)
    request_timeout: float = Field(30.0, gt=0)
    shutdown_timeout: float = Field(30.0, gt=0)

    @field_validator("workers")
    @classmethod
    def _one_process(cls, workers: int) -> int:
        if workers != 1:
            raise ValueError(f"{SINGLE_PROCESS}, got {workers}")
        return workers


class GuardConfig(BaseModel):
    """Everything ``rampart serve`` needs; see ``EXAMPLE``."""

    model_config = _STRICT

    model: ModelSettings
    limits: Limits = Field(default_factory=Limits)
    preprocessing: list[PreprocessingStep] = Field(default_factory=list)
    detectors: list[DetectorSettings] = Field(default_factory=list)
    outputs: Outputs = Field(default_factory=Outputs)
    keys: KeySettings = Field(default_factory=KeySettings)
    extraction: ExtractionSettings | None = None
    drift: DriftSettings | None = None
    audit_log: AuditLogSettings = Field(default_factory=AuditLogSettings)
    report: str | None = None
    server: ServerSettings = Field(default_factory=ServerSettings)

    @model_validator(mode="after")
    def _unique_detector_names(self) -> GuardConfig:
        labels = [d.label for d in self.detectors]
        if len(set(labels)) != len(labels):
            raise ValueError(f"detectors need distinct names, got {labels}; set name: for each")
        return self


def load_guard_config(path: str | Path) -> GuardConfig:
    """The validated ``GuardConfig`` in ``path``; a ``ConfigError`` lists what is wrong."""
    data = read_config_file(path, "guard", EXAMPLE)
    config = validate(GuardConfig, data, f"the guard config {path}")
    return resolve_paths(config, Path(path).parent)


def resolve_paths(config: GuardConfig, folder: Path) -> GuardConfig:
    """A copy of ``config`` with relative file paths made absolute against ``folder``."""

    def absolute(value: str | None) -> str | None:
        return None if value is None else _relative_to(value, folder)

    model = config.model
    update: dict[str, Any] = {
        "model": model.model_copy(update={"weights": absolute(model.weights),
                                          "spec": _model_spec(model.spec, folder)}),
        "detectors": [d.model_copy(update={"path": absolute(d.path)}) for d in config.detectors],
        "keys": config.keys.model_copy(update={"store": absolute(config.keys.store),
                                               "usage_path": absolute(config.keys.usage_path)}),
        "report": absolute(config.report),
        "audit_log": config.audit_log.model_copy(update={
            "url": _sqlite_url(config.audit_log.url, folder),
            "spill_path": absolute(config.audit_log.spill_path)}),
    }
    if config.drift is not None:
        update["drift"] = config.drift.model_copy(
            update={"reference": absolute(config.drift.reference)})
    if config.extraction is not None:
        update["extraction"] = config.extraction.model_copy(
            update={"state_path": absolute(config.extraction.state_path)})
    return config.model_copy(update=update)


def _model_spec(spec: str, folder: Path) -> str:
    """``spec`` with a relative file in it (``net.py:build``, ``models/net.py:build``, a
    TorchScript ``net.pt``) made absolute against ``folder``; ``package.module:build`` is
    left alone. Files are told from modules as ``rampart.loading`` tells them."""
    from rampart.loading import MODEL_FILE_SUFFIXES, _looks_like_path

    source, colon, attr = spec.rpartition(":")
    if colon and source and attr:
        if _looks_like_path(source):
            return f"{_relative_to(source, folder)}:{attr}"
        return spec
    if Path(spec).suffix.lower() in MODEL_FILE_SUFFIXES or "/" in spec or "\\" in spec \
            or (folder / spec).is_file():
        return _relative_to(spec, folder)
    return spec


def _relative_to(path: str, folder: Path) -> str:
    """``path`` (``~`` expanded) if absolute, else under ``folder``."""
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else folder / expanded)


def _sqlite_url(url: str, folder: Path) -> str:
    """``url`` with a relative SQLite file made absolute against ``folder``, however the URL
    spells it (a bare path, ``sqlite:///``, ``sqlite+pysqlite:///``); anything else as is."""
    from sqlalchemy.engine import make_url

    from rampart.evaluate.history import sqlite_file

    if not isinstance(url, str) or not url.strip():
        return url  # AuditLog says what is wrong with it
    path = sqlite_file(url.strip())
    if path is None or path.is_absolute():
        return url
    if "://" not in url:
        return str(folder / path)
    return make_url(url.strip()).set(database=str(folder / path)).render_as_string(
        hide_password=False)


def check_files(config: GuardConfig) -> None:
    """Refuse, in one ``ConfigError``, a config whose input files do not exist."""
    missing = []
    if config.model.weights and not Path(config.model.weights).is_file():
        missing.append(f"  model.weights: no file {config.model.weights}")
    for i, det in enumerate(config.detectors):
        if not Path(det.path).is_file():
            missing.append(f"  detectors.{i}.path: no file {det.path}")
    if config.drift is not None and not Path(config.drift.reference).is_file():
        missing.append(f"  drift.reference: no file {config.drift.reference}")
    if missing:
        raise ConfigError("the guard config names files that do not exist:\n"
                          + "\n".join(missing))
