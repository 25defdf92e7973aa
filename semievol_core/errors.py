"""Error types shared by every phase.

InputError is the one error a user sees for bad data or a bad config: its message always names the file
(or config source), the row and the field, so it can be printed as a single line without a traceback.
"""
from __future__ import annotations

import os
import stat


class SemiEvolError(Exception):
    """Base class of the errors this library raises on purpose."""


class InputError(SemiEvolError, ValueError):
    """Bad input: a data file, a dataset row or a config key. Never worth a retry."""

    def __init__(self, file: str, row: int | str | None, field: str | None, problem: str):
        self.file, self.row, self.field, self.problem = str(file), row, field, problem
        where = "header" if row == 0 else ("-" if row is None else row)
        super().__init__(one_line(f"{self.file}: row {where}, field {field or '-'}: {problem}"))


def one_line(text: str) -> str:
    """Line breaks (U+2028 and NEL too), control characters and undecodable bytes (surrogates) escaped the
    way repr does: a message stays one printable line whatever a file name, header or value holds."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def path_problem(path, directory: bool = False) -> str | None:
    """Why path cannot be read as a file (or a directory), or None. Only stats it: opening a FIFO to find
    out would block."""
    kind = "directory" if directory else "file"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a broken symbolic link" if os.path.islink(path) else f"{kind} not found"
    except OSError as err:  # a symlink loop, a name too long, a parent that is a file...
        return f"cannot be opened ({err.strerror})"
    if directory and not stat.S_ISDIR(mode):
        return "is not a directory"
    if not directory and stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not directory and not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    if not os.access(path, os.R_OK | (os.X_OK if directory else 0)):
        return "cannot be opened (permission denied)"
    return None


class BackendMissingError(SemiEvolError, ImportError):
    """A backend was chosen whose package is not installed."""


class TrainingError(SemiEvolError, RuntimeError):
    """A trainer failed or produced an adapter that does not load."""


class BusyError(SemiEvolError, RuntimeError):
    """Another live run holds the directory this run would write (a round, an evolution's state)."""
