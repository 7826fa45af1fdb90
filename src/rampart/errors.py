"""One exception family for everything rampart reports to its users.

Every error a user can cause (bad input, a wrong config, a model or file that cannot be
loaded) is a ``RampartError`` whose message says what was wrong and what to do about it.
The CLI prints these without a traceback and exits with code 2.
"""

from __future__ import annotations


class RampartError(Exception):
    """Base class of all errors rampart raises on purpose."""


class InputError(RampartError, ValueError):
    """Inputs or labels have the wrong shape, dtype, range or contain NaN."""


class ConfigError(RampartError, ValueError):
    """A threat model, attack or command option is invalid."""


class ModelLoadError(RampartError):
    """A model definition or its weights could not be loaded."""


class DataLoadError(RampartError):
    """A dataset could not be found or read."""


class ModelOutputError(RampartError):
    """The model's outputs are not what an attack needs (for example probabilities)."""
