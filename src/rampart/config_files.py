"""Reading the YAML/JSON configuration files of ``rampart audit`` and ``rampart train``.

Both read a mapping of settings from a file, resolve a relative ``weights`` path against the
file's folder (so a config travels with its weights), and validate it with a pydantic model
whose problems are all listed in one ``ConfigError``, one line per setting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rampart.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
RELATIVE_PATH_KEYS = ("weights",)


def read_config_file(path: str | Path, what: str, example: str) -> dict[str, Any]:
    """The settings in ``path`` (``what``: "audit", "training"), or a ConfigError showing
    ``example``. Relative ``weights`` paths that exist beside the file are made absolute."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no {what} config at {file}; write one like this:\n{example}")
    try:
        text = file.read_text()
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the {what} config {file}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the {what} config {file} must be a mapping of settings; see:\n"
                          f"{example}")
    for key in RELATIVE_PATH_KEYS:
        if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
            candidate = file.parent / data[key]
            if candidate.exists():
                data[key] = str(candidate)
    return data


def validate(model: type[M], data: dict[str, Any], where: str) -> M:
    """``model`` validated from ``data``; every problem listed in one ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field_ = ".".join(str(p) for p in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown setting"
            problems.append(f"  {field_}: {message}")
        raise ConfigError(f"{where} has problems:\n" + "\n".join(problems)) from None
