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


class TargetError(RampartError):
    """The model under attack failed to answer: a remote endpoint, ONNX session or callable."""


class QueryBudgetError(TargetError):
    """A black-box target's query budget (``max_queries``) is spent."""


class PartialResultError(TargetError):
    """The target failed part-way through an attack; ``result`` holds the finished samples.

    ``done`` of ``total`` samples were attacked before the failure; ``result`` is the
    ``AttackResult`` for those ``done`` samples (in the order given), so the work gathered so
    far can still be written out.
    """

    def __init__(self, message: str, *, result: object, done: int, total: int) -> None:
        super().__init__(message)
        self.result = result
        self.done = done
        self.total = total


class TextInputError(InputError):
    """Texts given to a text model are empty, not strings, or bytes that are not UTF-8."""
