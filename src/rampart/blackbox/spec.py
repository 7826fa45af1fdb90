"""Building a black-box target from what a command line can say (``--target`` and friends).

``rampart attack``, ``audit`` and ``extract`` accept the same target options; ``TargetSpec``
holds them and ``open_blackbox`` turns them into a ``BlackBoxClassifier``:

- ``http://...`` / ``https://...``: an HTTP endpoint (settings from ``--target-config``);
- ``model.onnx``: an ONNX model run with onnxruntime;
- ``file.py:name`` / ``package.module:name``: a Python object. A function that takes a batch
  is the query function itself (NumPy in; NumPy, torch or lists out). A function without
  required arguments is a factory: it returns a fitted scikit-learn classifier, an
  ``nn.Module``, a query function or a ``BlackBoxClassifier``. Nothing is ever unpickled.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from rampart.blackbox.callable_target import as_query_fn
from rampart.blackbox.classifier import BlackBoxClassifier
from rampart.errors import ConfigError, ModelLoadError
from rampart.loading import import_attribute

TARGET_FORMS = ("http(s)://host/path, model.onnx, file.py:name or package.module:name "
                "(a query function, or a factory returning a scikit-learn classifier, an "
                "nn.Module or a query function)")
KNOWLEDGE_OUTPUT = {"score": "scores", "decision": "labels", "transfer": "labels"}


@dataclass
class TargetSpec:
    """The target options shared by ``rampart attack``, ``audit`` and ``extract``.

    ``knowledge`` is the threat's access: ``score`` (scores), ``decision`` or ``transfer``
    (labels only, even when the target sends scores), or None for what the target gives.
    ``num_classes`` and ``input_shape`` are needed where the target cannot tell (HTTP,
    callables); commands fill them from the data when the user did not.
    """

    target: str | None = None  # None: the url in target_config
    target_config: Path | None = None
    knowledge: str | None = None
    num_classes: int | None = None
    input_shape: Sequence[int] | None = None
    scores: str | None = None  # probabilities or logits; None: the target's default
    bounds: tuple[float, float] = (0.0, 1.0)
    batch_size: int = 256
    query_log: Path | None = None
    max_queries: int | None = None

    @property
    def output(self) -> str | None:
        """``"scores"``, ``"labels"`` or None (the target's own), from ``knowledge``."""
        if self.knowledge is None or self.knowledge == "white-box":
            return None
        if self.knowledge not in KNOWLEDGE_OUTPUT:
            raise ConfigError(f"--knowledge must be score, decision or transfer, got "
                              f"{self.knowledge!r}.")
        return KNOWLEDGE_OUTPUT[self.knowledge]


def is_blackbox_spec(text: str) -> bool:
    """True for target specs only a black box can serve: URLs and ONNX files."""
    return text.startswith(("http://", "https://")) or text.lower().endswith(".onnx")


def open_blackbox(spec: TargetSpec) -> BlackBoxClassifier:
    """The ``BlackBoxClassifier`` ``spec`` describes, with its query log and budget."""
    target = spec.target
    is_url = target is None or target.startswith(("http://", "https://"))
    if target is None and spec.target_config is None:
        raise ConfigError(f"name the target with --target: {TARGET_FORMS}.")
    if spec.target_config is not None and not is_url:
        raise ConfigError("--target-config describes an HTTP target; give --target a URL or "
                          "leave --target out to use the config's url.")
    common: dict[str, Any] = {"bounds": spec.bounds, "batch_size": spec.batch_size,
                              "query_log": spec.query_log, "max_queries": spec.max_queries}
    if is_url:
        return _http(spec, common)
    assert target is not None
    if target.lower().endswith(".onnx"):
        from rampart.blackbox.onnx_target import from_onnx

        return from_onnx(target, num_classes=spec.num_classes,
                         input_shape=spec.input_shape, output=spec.output or "scores",
                         scores=spec.scores or "logits", **common)  # type: ignore[arg-type]
    if ":" in target:
        return _python(spec, common)
    raise ConfigError(f"cannot tell what kind of target {target!r} is; use {TARGET_FORMS}.")


def _http(spec: TargetSpec, common: dict[str, Any]) -> BlackBoxClassifier:
    from rampart.blackbox.http_config import load_http_config
    from rampart.blackbox.http_target import from_http

    config = load_http_config(
        spec.target_config, url=spec.target, num_classes=spec.num_classes, scores=spec.scores,
        input_shape=None if spec.input_shape is None else list(spec.input_shape))
    return from_http(config, output=spec.output, **common)


def _python(spec: TargetSpec, common: dict[str, Any]) -> BlackBoxClassifier:
    """A query function, or a factory's product, named by ``file.py:name``."""
    assert spec.target is not None
    obj = import_attribute(spec.target, "--target")
    if _is_factory(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise ModelLoadError(
                f"calling the target factory {spec.target}() failed: {type(exc).__name__}: "
                f"{exc}; a factory takes no arguments and returns the model."
            ) from exc
    if isinstance(obj, BlackBoxClassifier):
        return obj
    if hasattr(obj, "classes_") and hasattr(obj, "predict"):
        from rampart.blackbox.sklearn_target import from_sklearn

        return from_sklearn(obj, label_only=spec.output == "labels",
                            input_shape=spec.input_shape, **common)
    if not callable(obj):
        raise ModelLoadError(f"{spec.target} gave a {type(obj).__name__}, not a model; use "
                             f"{TARGET_FORMS}.")
    missing = [k for k in ("num_classes", "input_shape") if getattr(spec, k) is None]
    if missing:
        raise ConfigError(f"the target {spec.target} needs {' and '.join(missing)} (CLI: "
                          "--num-classes, --input-shape).")
    scores = spec.scores or ("logits" if isinstance(obj, nn.Module) else "probabilities")
    return BlackBoxClassifier(
        as_query_fn(obj), num_classes=spec.num_classes, input_shape=spec.input_shape,
        output=spec.output or "scores", scores=scores, name=spec.target,  # type: ignore[arg-type]
        **common)


def _is_factory(obj: Any) -> bool:
    """A function or class that can be called without arguments (not a module instance)."""
    if isinstance(obj, nn.Module) or not callable(obj):
        return False
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty and
                p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return not required


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,28,28"`` as ``(1, 28, 28)`` (for ``--input-shape``); None stays None."""
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace(" ", "").replace("x", ",").split(",") if v)
    except ValueError:
        raise ConfigError(f"--input-shape must be integers separated by commas, e.g. 1,28,28; "
                          f"got {text!r}.") from None
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"--input-shape must be positive integers, e.g. 1,28,28; got {text!r}.")
    return shape


def spec_from_flags(
    target: str | None,
    target_config: Path | None = None,
    *,
    knowledge: str | None = None,
    num_classes: int | None = None,
    input_shape: str | None = None,
    scores: str | None = None,
    query_log: Path | None = None,
    max_queries: int | None = None,
    batch_size: int = 256,
) -> TargetSpec | None:
    """The ``TargetSpec`` for a command's ``--target ...`` flags, or None without a target.

    ``input_shape`` is the flag's text (``"1,28,28"``). Shared by ``rampart attack``, ``audit``
    and ``extract`` so the three accept the same options with the same checks.
    """
    if target is None and target_config is None:
        extras = {"--knowledge": knowledge if knowledge not in (None, "white-box") else None,
                  "--num-classes": num_classes, "--input-shape": input_shape,
                  "--scores": scores, "--query-log": query_log, "--max-queries": max_queries}
        given = [flag for flag, value in extras.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to a black-box target; add "
                              "--target (a URL, an .onnx file or file.py:function).")
        return None
    if scores is not None and scores not in ("probabilities", "logits"):
        raise ConfigError(f"--scores must be probabilities or logits, got {scores!r}.")
    if max_queries is not None and max_queries < 1:
        raise ConfigError(f"--max-queries must be at least 1, got {max_queries}.")
    if num_classes is not None and num_classes < 2:
        raise ConfigError(f"--num-classes must be at least 2, got {num_classes}.")
    spec = TargetSpec(target=target, target_config=target_config, knowledge=knowledge,
                      num_classes=num_classes, input_shape=parse_shape(input_shape),
                      scores=scores, batch_size=batch_size, query_log=query_log,
                      max_queries=max_queries)
    _ = spec.output  # validates knowledge
    return spec


class TargetSettings(BaseModel):
    """The ``target:`` block of a config file (``rampart audit --config``): the same options
    as the command line's ``--target`` flags."""

    model_config = ConfigDict(extra="forbid")

    spec: str | None = None  # URL, model.onnx or file.py:name; None: the url in config
    config: Path | None = None  # the HTTP target's settings file
    knowledge: str | None = None
    num_classes: int | None = Field(None, ge=2)
    input_shape: list[int] | None = None
    scores: str | None = None
    query_log: Path | None = None
    max_queries: int | None = Field(None, ge=1)

    def to_spec(self, batch_size: int = 256) -> TargetSpec:
        """The ``TargetSpec`` these settings describe."""
        if self.spec is None and self.config is None:
            raise ConfigError("target needs spec (a URL, model.onnx or file.py:name) or "
                              "config (an HTTP target's settings file).")
        spec = TargetSpec(target=self.spec, target_config=self.config, knowledge=self.knowledge,
                          num_classes=self.num_classes, input_shape=self.input_shape,
                          scores=self.scores, batch_size=batch_size, query_log=self.query_log,
                          max_queries=self.max_queries)
        _ = spec.output  # validates knowledge
        return spec
