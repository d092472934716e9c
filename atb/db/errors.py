"""The exceptions every atb layer raises: one hierarchy, messages that name what failed, never a password."""


class DatabaseError(Exception):
    """Base class of every atb database error."""


class ConfigurationError(DatabaseError):
    """The database settings are missing, contradictory or refused (e.g. SQLite outside tests)."""


class DatabaseUnavailable(DatabaseError):
    """The server could not be reached, or no pooled connection freed up, within the configured time."""


class NotFound(DatabaseError):
    """A row the caller named does not exist."""


class DuplicateError(DatabaseError):
    """A unique key (exchange order id, cache key, ...) is already taken; nothing was written."""


class ValidationError(DatabaseError, ValueError):
    """Caller input was refused before any SQL ran. Also a ValueError, so `except ValueError` still works."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class MigrationError(DatabaseError):
    """A migration could not be planned, applied or checked."""


class QueryTimeout(DatabaseError):
    """A statement or lock wait hit its configured limit; retrying may succeed, unlike a bad query."""
