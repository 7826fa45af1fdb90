"""What every result that writes report files shares: JSON, Markdown and HTML on disk.

A result class sets ``schema_kind`` and ``schema_version`` (its JSON document's header),
and implements ``to_dict``, ``to_markdown`` and ``to_html``; the ``save_*`` methods write
them atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar


class SavedReport:
    """Mixin: ``save_json`` / ``save_markdown`` / ``save_html`` from the class's renderers."""

    schema_kind: ClassVar[str]
    schema_version: ClassVar[int]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_markdown(self) -> str:
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    def save_json(self, path: str | Path) -> Path:
        """The schema-versioned JSON document."""
        from rampart.evaluate.json_report import write_json

        return write_json(path, self.schema_kind, self.schema_version, self.to_dict())

    def save_markdown(self, path: str | Path) -> Path:
        """The Markdown summary (for CI comments)."""
        from rampart.evaluate.atomic import write_text_atomic

        return write_text_atomic(path, self.to_markdown())

    def save_html(self, path: str | Path) -> Path:
        """The self-contained HTML page."""
        from rampart.evaluate.atomic import write_text_atomic

        return write_text_atomic(path, self.to_html())
