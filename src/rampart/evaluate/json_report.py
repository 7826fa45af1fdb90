"""Schema-versioned JSON documents: ``{"schema": "rampart.<kind>", "schema_version": N, ...}``.

CI tools, the history store and later rampart versions read these files, so each names its
kind and the version of its layout, and reading checks both before anything trusts the
content. Writing converts what results are made of (NumPy and torch scalars and arrays,
dataclasses, paths, datetimes) into plain JSON, turns NaN and infinities into ``null``
(strict JSON has no such numbers) and writes atomically.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Container, Mapping
from datetime import date, datetime
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from rampart.errors import DataLoadError, InputError
from rampart.evaluate.atomic import write_text_atomic

_KIND = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$")


class ReportSchemaError(DataLoadError):
    """A JSON file is not the rampart report kind or schema version that was expected."""


def schema_name(kind: str) -> str:
    """``"audit"`` -> ``"rampart.audit"`` (a name that already starts with rampart. is kept)."""
    name = kind[len("rampart."):] if kind.startswith("rampart.") else kind
    if not _KIND.match(name):
        raise InputError(f"report kind {kind!r} is not valid; use lower-case words such as "
                         "'audit' or 'scan-data'.")
    return f"rampart.{name}"


def to_jsonable(value: Any, where: str = "$") -> Any:
    """``value`` as plain JSON types; NaN and infinities become None. ``where`` names the
    position in the document for the error raised on a value JSON cannot hold."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), where)
    if isinstance(value, np.ndarray | torch.Tensor):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
        return to_jsonable(value.tolist(), where)
    if isinstance(value, Mapping):
        return {_key(k, where): to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = sorted(value, key=repr)
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(items)]
    if isinstance(value, Enum):
        return to_jsonable(value.value, where)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name), f"{where}.{f.name}")
                for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):  # pydantic models (ThreatModel)
        return to_jsonable(value.model_dump(), where)
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict(), where)
    raise InputError(f"{where}: a {type(value).__name__} cannot be written to JSON; convert it "
                     "to numbers, text, lists or dicts first.")


def _key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool | int | float | np.generic | Enum):
        return str(key.value if isinstance(key, Enum) else key)
    raise InputError(f"{where}: dict key {key!r} cannot be a JSON key; use text or numbers.")


def document(kind: str, version: int, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-ready document: schema and version first, then ``payload``'s fields."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"schema_version must be a positive integer; got {version!r}.")
    taken = {"schema", "schema_version"} & set(payload)
    if taken:
        raise InputError(f"the payload may not set {', '.join(sorted(taken))}: the document "
                         "header is written from kind and version.")
    body = to_jsonable(payload)
    return {"schema": schema_name(kind), "schema_version": version, **body}


def dumps(kind: str, version: int, payload: Mapping[str, Any], indent: int | None = 2) -> str:
    """The document as strict JSON text (never NaN or Infinity), ending in a newline."""
    text = json.dumps(document(kind, version, payload), indent=indent, ensure_ascii=False,
                      allow_nan=False)
    return text + "\n"


def write_json(
    path: str | Path,
    kind: str,
    version: int,
    payload: Mapping[str, Any],
    indent: int | None = 2,
) -> Path:
    """Write the schema-versioned document to ``path`` atomically; returns the path."""
    return write_text_atomic(path, dumps(kind, version, payload, indent))


def check_document(
    doc: Any, kind: str, versions: int | Container[int], source: str = "the document"
) -> dict[str, Any]:
    """``doc`` if it is a ``rampart.<kind>`` document of an accepted version, else
    ReportSchemaError saying what it is instead."""
    expected = schema_name(kind)
    accepted = (versions,) if isinstance(versions, int) else versions
    if not isinstance(doc, dict):
        raise ReportSchemaError(f"{source} is not a rampart report: it holds a JSON "
                                f"{type(doc).__name__}, not an object.")
    schema = doc.get("schema")
    if schema is None:
        raise ReportSchemaError(f"{source} is not a rampart report: it has no 'schema' field "
                                f"(expected {expected!r}).")
    if schema != expected:
        raise ReportSchemaError(f"{source} is a {schema!r} document, not {expected!r}; pass "
                                f"the file written for {expected}.")
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in accepted:
        wanted = _describe(accepted)
        raise ReportSchemaError(f"{source} is {expected} schema_version {version!r}, but this "
                                f"rampart reads version {wanted}; regenerate the report with "
                                "this rampart or use the rampart version that wrote it.")
    return doc


def _describe(versions: Container[int]) -> str:
    try:
        return " or ".join(str(v) for v in sorted(versions))  # type: ignore[call-overload]
    except TypeError:  # a container that cannot be listed
        return str(versions)


def read_json(path: str | Path, kind: str, versions: int | Container[int]) -> dict[str, Any]:
    """Read a document written by :func:`write_json`, checking its kind and version."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataLoadError(f"no report at {path}; check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataLoadError(f"cannot read the report {path}: {exc}.") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataLoadError(f"{path} is not valid JSON (line {exc.lineno}, column "
                            f"{exc.colno}: {exc.msg}); it may be truncated or not a "
                            "report.") from None
    return check_document(doc, kind, versions, source=str(path))
