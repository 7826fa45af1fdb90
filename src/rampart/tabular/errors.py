"""The errors a feature schema, its expressions or a CSV file can cause.

All of them are ``RampartError`` subclasses (so the CLI prints them in one line and exits 2),
and each message names the feature, column or row at fault and what to change.
"""

from __future__ import annotations

from rampart.errors import ConfigError, DataLoadError


class SchemaError(ConfigError):
    """A feature schema is malformed: a bad type, bound, group or setting."""


class ExpressionSyntaxError(SchemaError):
    """A relation cannot be parsed; ``position`` is the 0-based character where it failed."""

    def __init__(self, message: str, *, text: str, position: int) -> None:
        pointer = " " * position + "^"
        super().__init__(f"{message} at position {position} in relation:\n  {text}\n  {pointer}")
        self.text = text
        self.position = position


class UnknownFeatureError(SchemaError):
    """A relation names a column that the schema does not declare."""


class SchemaDataError(DataLoadError):
    """The data contradicts its schema: missing or extra columns, values out of bounds,
    broken one-hot groups, non-integers in an integer feature or violated relations."""
