"""Turning values into the short text reports show: numbers, percentages, durations, columns.

The HTML page and the Markdown summary format the same numbers the same way, so both use
:func:`format_value` and :class:`Column`. A format is a name (``"auto"``, ``"pct"``,
``"pct:2"``, ``"int"``, ``"float:3"``, ``"sci"``, ``"seconds"``, ``"text"``), a Python
format spec such as ``".3f"``, or any callable returning a string.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rampart.errors import ConfigError

Format = str | Callable[[Any], str]
MISSING = "–"  # en dash: a value that is absent, NaN or infinite where that means "none"
VERDICTS = ("pass", "warn", "fail", "info")
VERDICT_RANK = {"pass": 0, "info": 0, "warn": 1, "fail": 2}


def scalar(value: Any) -> Any:
    """NumPy and torch scalars as Python numbers, arrays and tensors as (nested) lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | torch.Tensor):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
        return value.item() if value.ndim == 0 else value.tolist()
    return value


def is_number(value: Any) -> bool:
    """True for ints and floats (NumPy/torch scalars included), False for bools and text."""
    value = scalar(value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def format_value(value: Any, fmt: Format = "auto") -> str:
    """``value`` as short display text; None, NaN and infinities become an en dash."""
    if callable(fmt):
        return str(fmt(value))
    value = scalar(value)
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v, fmt)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(format_value(v, fmt) for v in value)
    if not isinstance(value, numbers.Real):
        return str(value)
    value = float(value) if not isinstance(value, int) else value
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return _format_number(value, fmt)


def _format_number(value: int | float, fmt: str) -> str:
    name, _, arg = fmt.partition(":")
    if name == "auto":
        return _auto(value)
    if name == "text":
        return str(value)
    if name == "pct":
        digits = _digits(arg, 1, fmt)
        return f"{100 * value:.{digits}f}%"
    if name == "int":
        return f"{round(value):,}"
    if name == "float":
        return f"{value:.{_digits(arg, 3, fmt)}f}"
    if name == "sci":
        return f"{value:.{_digits(arg, 2, fmt)}e}"
    if name == "seconds":
        return format_seconds(float(value))
    try:
        return format(value, fmt)
    except (ValueError, TypeError):
        raise ConfigError(f"unknown number format {fmt!r}; use auto, pct, pct:N, int, float:N, "
                          "sci, seconds, text, a Python format spec or a function.") from None


def _digits(arg: str, default: int, fmt: str) -> int:
    if not arg:
        return default
    if not arg.isdigit():
        raise ConfigError(f"number format {fmt!r}: the part after ':' must be a digit count.")
    return int(arg)


def _auto(value: int | float) -> str:
    """Integers with thousands separators; floats with about four significant digits."""
    if isinstance(value, int):
        return f"{value:,}"
    size = abs(value)
    if size == 0:
        return "0"
    if size >= 1e9 or size < 1e-3:
        return f"{value:.3g}"
    if size >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def format_seconds(seconds: float) -> str:
    """A duration a person reads at a glance: ``850 ms``, ``12.3 s``, ``4 min 05 s``."""
    if math.isnan(seconds):
        return MISSING
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if round(seconds) < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def check_verdict(verdict: str) -> str:
    """The verdict in lower case; ConfigError unless it is pass, warn, fail or info."""
    word = str(verdict).strip().lower()
    if word not in VERDICTS:
        raise ConfigError(f"unknown verdict {verdict!r}; use one of {', '.join(VERDICTS)}.")
    return word


def worst_verdict(verdicts: Sequence[str]) -> str:
    """The most serious of ``verdicts`` (fail > warn > pass); ``pass`` when there are none."""
    worst = max((VERDICT_RANK[check_verdict(v)] for v in verdicts), default=0)
    return {0: "pass", 1: "warn", 2: "fail"}[worst]


@dataclass(frozen=True)
class Column:
    """One table column: which key of each row, its heading, format and alignment."""

    key: str
    label: str | None = None
    fmt: Format = "auto"
    align: str | None = None  # "left" | "right" | "center"; None: right for numbers

    @property
    def heading(self) -> str:
        return self.label if self.label is not None else self.key.replace("_", " ")


def resolve_columns(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str | Column] | Mapping[str, str] | None = None,
    formats: Mapping[str, Format] | None = None,
) -> list[Column]:
    """Columns for ``rows``: as given (keys, ``Column``s or key -> heading), else every key in
    first-seen order; ``formats`` overrides the format per key; alignment follows the values."""
    formats = dict(formats or {})
    if columns is None:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        spec: list[Column] = [Column(k) for k in keys]
    elif isinstance(columns, Mapping):
        spec = [Column(k, label) for k, label in columns.items()]
    else:
        spec = [c if isinstance(c, Column) else Column(str(c)) for c in columns]
    unknown = set(formats) - {c.key for c in spec}
    if unknown:
        raise ConfigError(f"formats given for columns that are not in the table: "
                          f"{', '.join(sorted(unknown))}.")
    out = []
    for col in spec:
        fmt = formats.get(col.key, col.fmt)
        align = col.align
        if align is None:
            values = [row.get(col.key) for row in rows if row.get(col.key) is not None]
            align = "right" if values and all(is_number(v) for v in values) else "left"
        if align not in ("left", "right", "center"):
            raise ConfigError(f"column {col.key!r}: align must be left, right or center.")
        out.append(Column(col.key, col.label, fmt, align))
    return out
