"""The audit configuration file (``rampart audit --config audit.yaml``).

One YAML (or JSON) file says which model, data and threats to audit, with which suite, what
to write, where to keep the history and which gates must hold. Flags on the command line
override the file. Unknown keys are errors, so a typo never silently drops a gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rampart.blackbox.spec import TargetSettings
from rampart.config_files import read_config_file, validate
from rampart.evaluate.gates import Gates
from rampart.evaluate.suites import SUITES
from rampart.threat import ThreatModel

EXAMPLE = """\
model: rampart.zoo:digits_cnn        # file.py:factory, package.module:factory or TorchScript
weights: reports/demo/digits_cnn.safetensors
data: digits                         # digits, mnist:DIR, cifar10:DIR, npz:FILE, folder:DIR
threats:
  - {norm: linf, eps: [0.05, 0.1]}
suite: standard                      # quick, standard or thorough
gates:
  min_clean_accuracy: 0.9
  min_robust_accuracy: {linf@0.1: 0.2}
  max_drop: 0.02                     # against the last passing run of this model
outputs: {dir: reports/audit}
# compare_with: reports/before/report.json   # show an earlier audit side by side
# certify: {sigma: 0.25, samples: 100}       # randomized-smoothing certificates as well
# surrogate: {model: rampart.zoo:digits_cnn, weights: surrogate.safetensors}  # transfer threats
"""


class Outputs(BaseModel):
    """Where the reports go and which are written."""

    model_config = ConfigDict(extra="forbid")

    dir: Path = Path("reports/audit")
    html: bool = True
    json_file: bool = Field(True, alias="json")
    markdown: bool = True


class CertifySettings(BaseModel):
    """Randomized-smoothing certification run with the audit (Cohen et al.'s CERTIFY).

    The base model is the audited one; it should have been trained with Gaussian noise of
    the same ``sigma`` (``rampart.defenses.fit_noisy``) or it abstains on most inputs.
    """

    model_config = ConfigDict(extra="forbid")

    sigma: float = Field(gt=0)
    samples: int = Field(100, ge=1)  # the first N audited samples are certified
    n0: int = Field(100, ge=1)
    n: int = Field(100_000, ge=1)
    alpha: float = Field(0.001, gt=0, lt=1)
    batch_size: int = Field(1_000, ge=1)
    noise: Literal["shared", "independent"] = "shared"  # see rampart.defenses.noise


class SurrogateConfig(BaseModel):
    """The attacker's own model that ``knowledge: transfer`` threats craft examples on.

    ``model`` and ``weights`` are read like the audited model's; the surrogate takes the same
    inputs (bounds, shape) and predicts the same classes. A bare string is the model spec.
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    weights: Path | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    def load(self, bounds: tuple[float, float], input_shape: Any = None,
             device: Any = None, batch_size: int = 256) -> Any:
        """The surrogate as a ``rampart.Classifier``."""
        from rampart.loading import load_model
        from rampart.models import Classifier

        net = load_model(self.model, self.weights, device=device)
        return Classifier(net, bounds=bounds, mean=self.mean, std=self.std,
                          input_shape=input_shape, batch_size=batch_size)


class AuditConfig(BaseModel):
    """Everything one audit needs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str | None = None  # a local PyTorch model, or
    target: TargetSettings | None = None  # a black box: a URL, model.onnx or file.py:function
    weights: Path | None = None
    name: str | None = None
    data: str = "digits"
    split: str = "test"
    limit: int | None = Field(None, ge=1)
    bounds: tuple[float, float] = (0.0, 1.0)
    mean: list[float] | None = None
    std: list[float] | None = None
    output: Literal["logits", "probabilities"] = "logits"
    batch_size: int = Field(500, ge=1)
    device: str = "auto"
    threats: list[ThreatModel]
    suite: str = "standard"
    seed: int = 0
    diagnostics: bool = True
    gates: Gates = Field(default_factory=Gates)
    outputs: Outputs = Field(default_factory=Outputs)
    db: str | None = None
    history: bool = True
    compare_with: Path | None = None
    certify: CertifySettings | None = None
    surrogate: SurrogateConfig | None = None  # for knowledge: transfer threats

    @field_validator("suite")
    @classmethod
    def _known_suite(cls, value: str) -> str:
        if value.lower() not in SUITES:
            raise ValueError(f"unknown suite {value!r}; choose one of {', '.join(SUITES)}")
        return value.lower()

    @field_validator("surrogate", mode="before")
    @classmethod
    def _surrogate_spec(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @field_validator("threats", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [value]
        if isinstance(value, list) and not value:
            raise ValueError("at least one threat is needed, e.g. [{norm: linf, eps: 0.3}]")
        return value

    @model_validator(mode="after")
    def _model_or_target(self) -> AuditConfig:
        if (self.model is None) == (self.target is None):
            raise ValueError("the audit needs model (a local PyTorch model) or target (a URL, "
                             "model.onnx or file.py:function), not both and not neither")
        return self

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None
                  ) -> AuditConfig:
        """Read a YAML/JSON file, apply ``overrides`` (flags), validate. A relative
        ``target.config`` is looked for beside the file first."""
        data = read_config_file(path, "audit", EXAMPLE)
        config = cls.build({**data, **(overrides or {})}, where=str(path))
        settings = config.target
        if settings is not None and settings.config is not None and \
                not settings.config.is_absolute():
            beside = Path(path).parent / settings.config
            if beside.is_file():
                settings.config = beside
        return config

    @classmethod
    def build(cls, data: dict[str, Any], where: str = "the audit settings") -> AuditConfig:
        return validate(cls, data, where)
