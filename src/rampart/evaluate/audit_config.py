"""The audit configuration file (``rampart audit --config audit.yaml``).

One YAML (or JSON) file says which model, data and threats to audit, with which suite, what
to write, where to keep the history and which gates must hold. Flags on the command line
override the file. Unknown keys are errors, so a typo never silently drops a gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
"""


class Outputs(BaseModel):
    """Where the reports go and which are written."""

    model_config = ConfigDict(extra="forbid")

    dir: Path = Path("reports/audit")
    html: bool = True
    json_file: bool = Field(True, alias="json")
    markdown: bool = True


class AuditConfig(BaseModel):
    """Everything one audit needs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str
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

    @field_validator("suite")
    @classmethod
    def _known_suite(cls, value: str) -> str:
        if value.lower() not in SUITES:
            raise ValueError(f"unknown suite {value!r}; choose one of {', '.join(SUITES)}")
        return value.lower()

    @field_validator("threats", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [value]
        if isinstance(value, list) and not value:
            raise ValueError("at least one threat is needed, e.g. [{norm: linf, eps: 0.3}]")
        return value

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None
                  ) -> AuditConfig:
        """Read a YAML/JSON file, apply ``overrides`` (flags), validate."""
        data = read_config_file(path, "audit", EXAMPLE)
        return cls.build({**data, **(overrides or {})}, where=str(path))

    @classmethod
    def build(cls, data: dict[str, Any], where: str = "the audit settings") -> AuditConfig:
        return validate(cls, data, where)
