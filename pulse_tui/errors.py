"""Errors that reach the operator as one clear line (no traceback unless --debug)."""

from __future__ import annotations


class PulseError(Exception):
    """A failure the operator can act on; its message is shown as one line."""

    exit_code = 1


class UsageError(PulseError):
    """Bad arguments or input the user typed (exit code 2)."""

    exit_code = 2


class DatabaseError(PulseError):
    """The database file cannot be used (not SQLite, not PULSE, too new, locked)."""


class ReadOnlyError(PulseError):
    """A write was asked of a read-only session (``--read-only``)."""


class ValidationError(UsageError):
    """Bad input in named fields; ``errors`` maps each field to its message (nothing saved)."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class ConflictError(PulseError):
    """Someone else changed the row since it was read (optimistic check on ``updated_at``)."""


class NameTaken(PulseError):
    """A name or id that must be unique is already in use (nothing was saved)."""


class RowVanished(PulseError):
    """The row the operator acted on is gone (deleted by someone else?)."""


class CohortNotFound(RowVanished):
    """No cohort with that id (deleted by someone else?)."""
