"""Reading a CSV file against a feature schema: columns by name, values checked.

The header names the columns; every schema column must be there (in any order) and every
other column must be the label or listed in ``ignore``. Values are parsed as numbers, the
label as class names (sorted, so ``0``/``1`` or ``legit``/``fraud`` both work), and the rows
are checked against the schema (:meth:`FeatureSchema.check_data`): a CSV the schema
contradicts is refused with the file, column and line.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rampart.errors import DataLoadError
from rampart.tabular.errors import SchemaDataError
from rampart.tabular.schema import FeatureSchema, load_schema


@dataclass
class TabularData:
    """Features ``x`` (float32, ``(n, d)`` in the schema's column order), labels ``y``
    (int64 class indices), the schema and the class names behind the indices."""

    x: torch.Tensor
    y: torch.Tensor
    schema: FeatureSchema
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __iter__(self) -> Iterator[Any]:
        """Lets ``x, y, schema = load_csv(...)`` unpack."""
        return iter((self.x, self.y, self.schema))


def load_csv(
    path: str | Path,
    schema: FeatureSchema | Mapping[str, Any] | str | Path,
    label: str | None = None,
    *,
    ignore: Collection[str] = (),
    calibrate: bool = True,
    limit: int | None = None,
) -> TabularData:
    """Load ``path`` with ``schema`` (an object, a dict or a YAML path).

    ``label`` names the label column (default: the schema's ``label:``). ``ignore`` lists
    extra columns to drop (ids, timestamps). With ``calibrate`` the schema's budget scales are
    set from this data's standard deviations (see ``FeatureSchema.calibrate``). ``limit``
    keeps the first rows.
    """
    schema = load_schema(schema)
    label = label or schema.label
    file = Path(path)
    if label is None:
        raise DataLoadError(f"name the label column of {file} (label= or label: in the "
                            "schema).")
    header, rows = _read_rows(file)
    _check_header(header, schema, label, ignore, file)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataLoadError(f"{file} has a header but no rows; add data rows.")
    positions = [header.index(c) for c in schema.columns]
    values = np.empty((len(rows), len(positions)), dtype=np.float64)
    for r, row in enumerate(rows):
        if len(row) != len(header):
            raise DataLoadError(f"{file} line {r + 2} has {len(row)} fields but the header has "
                                f"{len(header)}; fix the quoting or the separators.")
        for c, p in enumerate(positions):
            try:
                values[r, c] = float(row[p]) if row[p].strip() else np.nan
            except ValueError:
                raise SchemaDataError(
                    f"{file} line {r + 2}, column {header[p]!r}: {row[p]!r} is not a number; "
                    "encode categories as one-hot columns declared type: categorical."
                ) from None
    labels = [row[header.index(label)].strip() for row in rows]
    schema.check_data(values, where=str(file), first_row=2)
    names, y = _classes(labels)
    x = torch.as_tensor(values, dtype=torch.float32)
    if calibrate:
        schema.calibrate(x)
    return TabularData(x, torch.as_tensor(y, dtype=torch.long), schema, names)


def _read_rows(file: Path) -> tuple[list[str], list[list[str]]]:
    if not file.is_file():
        raise DataLoadError(f"no CSV file at {file}; check the path.")
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [row for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataLoadError(f"cannot read {file} as UTF-8 CSV: {exc}") from None
    if not header:
        raise DataLoadError(f"{file} is empty; it needs a header line naming the columns.")
    header = [h.strip() for h in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise DataLoadError(f"{file} names column(s) {', '.join(duplicated)} more than once; "
                            "rename them.")
    return header, rows


def _check_header(header: list[str], schema: FeatureSchema, label: str,
                  ignore: Collection[str], file: Path) -> None:
    missing = [c for c in schema.columns if c not in header]
    if missing:
        hints = [f"{m} (the file has {close[0]!r})" if (close := difflib.get_close_matches(
            m, header, n=1)) else m for m in missing]
        raise SchemaDataError(f"{file} lacks the schema column(s) {', '.join(hints)}; add them "
                              "to the file or fix their names in the schema.")
    if label not in header:
        raise SchemaDataError(f"{file} has no label column {label!r}; its columns are "
                              f"{', '.join(header)}.")
    known = set(schema.columns) | {label} | set(ignore)
    extra = [h for h in header if h not in known]
    if extra:
        raise SchemaDataError(f"{file} has column(s) {', '.join(extra)} that the schema does "
                              "not declare; add them to features: (mutable: false if the "
                              "attacker cannot change them) or drop them with ignore=.")


def _classes(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Class names in a stable order (numerically when all are numbers) and indices."""
    unique = sorted(set(labels))
    with contextlib.suppress(ValueError):
        unique = sorted(unique, key=float)
    if len(unique) < 2:
        raise DataLoadError(f"the label column has a single class ({unique[0]!r}); an attack "
                            "needs at least two.")
    lookup = {name: i for i, name in enumerate(unique)}
    return unique, np.array([lookup[v] for v in labels], dtype=np.int64)
