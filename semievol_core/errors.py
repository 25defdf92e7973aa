"""Error types shared by every phase.

InputError is the one error a user sees for bad data or a bad config: its message always names the file
(or config source), the row and the field, so it can be printed as a single line without a traceback.
"""
from __future__ import annotations


class SemiEvolError(Exception):
    """Base class of the errors this library raises on purpose."""


class InputError(SemiEvolError, ValueError):
    """Bad input: a data file, a dataset row or a config key. Never worth a retry."""

    def __init__(self, file: str, row: int | str | None, field: str | None, problem: str):
        self.file, self.row, self.field, self.problem = str(file), row, field, problem
        where = "header" if row == 0 else ("-" if row is None else row)
        super().__init__(f"{self.file}: row {where}, field {field or '-'}: {problem}")


class BackendMissingError(SemiEvolError, ImportError):
    """A backend was chosen whose package is not installed."""


class TrainingError(SemiEvolError, RuntimeError):
    """A trainer failed or produced an adapter that does not load."""


class BusyError(SemiEvolError, RuntimeError):
    """Another live run holds the directory this run would write (a round, an evolution's state)."""
