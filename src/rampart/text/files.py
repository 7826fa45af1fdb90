"""Reading labelled texts from files: CSV (a text and a label column) or TXT (label<TAB>text).

Files are read as bytes and decoded as strict UTF-8 (a BOM is allowed), so a file in another
encoding fails with the line and byte offset of the first bad byte instead of silently
turning into mojibake. Labels may be integers or class names (sorted to indices).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rampart.errors import DataLoadError, TextInputError


def read_utf8(path: Path) -> str:
    """The file's text; non-UTF-8 bytes raise ``TextInputError`` naming line and offset."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TextInputError(
            f"{path} is not valid UTF-8: byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start} (line {line}); re-save the file as UTF-8"
        ) from None


def _labels(raw: list[str], path: Path) -> tuple[list[int], list[str]]:
    if all(r.strip().lstrip("-").isdigit() for r in raw):
        ints = [int(r) for r in raw]
        if min(ints) < 0:
            raise DataLoadError(f"{path}: integer labels must be >= 0, got {min(ints)}")
        return ints, [str(i) for i in range(max(ints) + 1)]
    names = sorted({r.strip() for r in raw})
    index = {n: i for i, n in enumerate(names)}
    return [index[r.strip()] for r in raw], names


def _read_csv(path: Path, content: str, text_column: str, label_column: str
              ) -> tuple[list[str], list[str]]:
    """The texts and raw labels of a CSV with a header; malformed CSV is a ``DataLoadError``."""
    texts: list[str] = []
    raw: list[str] = []
    reader = csv.DictReader(io.StringIO(content, newline=""), strict=True)
    try:
        fields = reader.fieldnames or []
        for column in (text_column, label_column):
            if column not in fields:
                raise DataLoadError(
                    f"{path} has no {column!r} column (columns: {', '.join(fields) or 'none'});"
                    " name them with --text-column / --label-column"
                )
        for row in reader:
            number = reader.line_num
            text, label = row.get(text_column), row.get(label_column)
            if text is None or label is None or not label.strip():
                raise DataLoadError(f"{path} line {number}: missing text or label")
            if not text.strip():
                raise TextInputError(f"{path} line {number}: the text is empty")
            texts.append(text)
            raw.append(label)
    except csv.Error as exc:
        start = reader.line_num + 1  # the line_num of the last row read whole, plus one
        raise DataLoadError(
            f"{path} is not valid CSV in the row starting on line {start}: {exc}; quote "
            'fields that contain commas, quotes or line breaks ("...", with "" for a quote '
            "inside)"
        ) from None
    return texts, raw


def load_labelled_texts(
    path: str | Path, *, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[int], list[str]]:
    """(texts, labels, class names) from a ``.csv`` with a header or a ``.txt`` / ``.tsv``
    with one ``label<TAB>text`` per line."""
    path = Path(path)
    if not path.is_file():
        raise DataLoadError(f"no file {path}; give a CSV (text,label columns) or a TXT file "
                            "with one 'label<TAB>text' per line")
    content = read_utf8(path)
    texts: list[str] = []
    raw: list[str] = []
    if path.suffix.lower() == ".csv":
        texts, raw = _read_csv(path, content, text_column, label_column)
    else:
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            label, sep, text = line.partition("\t")
            if not sep or not label.strip():
                raise DataLoadError(
                    f"{path} line {number}: expected 'label<TAB>text', got {line[:40]!r}"
                )
            if not text.strip():
                raise TextInputError(f"{path} line {number}: the text is empty")
            texts.append(text)
            raw.append(label)
    if not texts:
        raise DataLoadError(f"{path} contains no texts")
    labels, names = _labels(raw, path)
    if len(set(labels)) < 2:
        raise DataLoadError(
            f"{path} has only one class ({names[labels[0]]}); a classifier needs two"
        )
    return texts, labels, names
