"""The kiban error hierarchy.

    KibanError                  anything kiban raises on purpose; the CLI prints its message, exit 1
    ├── ConfigError             a bad flag, config file or field; exit 2
    ├── DataError               bad input data (a file, a line, a field); exit 2
    ├── LineageError            an artifact whose recorded hashes no longer match its inputs; exit 1
    ├── (in kiban.serve) AuthError, RateLimited, IntegrityError (a model file differs from its manifest; exit 2)
    └── (in kiban.evaluate) TaskDataError (a benchmark file missing or malformed; exit 2), BackendError

Every message names the file, line or field at fault, so a user can fix it without a traceback.
"""

from __future__ import annotations


class KibanError(Exception):
    """Base of every error kiban raises on purpose."""

    exit_code = 1


class ConfigError(KibanError):
    """A flag, config file or config field is wrong; the message names it."""

    exit_code = 2


class DataError(KibanError):
    """Input data is unusable as a whole (not a single bad record: those go to quarantine)."""

    exit_code = 2


class LineageError(KibanError):
    """An artifact's recorded input hashes do not match the inputs on disk."""

    exit_code = 1
