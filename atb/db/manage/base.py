"""What every manager domain module shares: the current session and running work on the pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .. import connection, validate

T = TypeVar("T")


class ManagerBase:
    """State shared by the DatabaseManager mixins: the current trading session."""

    _current_session_id: int | None = None

    def _session(self, session_id: int | None) -> int | None:
        """An explicit session id, else the manager's current session (may be None)."""
        if session_id is None:
            return self._current_session_id
        return validate.integer("session_id", session_id, minimum=1)

    @staticmethod
    def _write(work: Callable[[], T]) -> T:
        """Run several statements as one transaction (retried once on a dead connection)."""
        return connection.run(work, transaction=True)

    @staticmethod
    def _dashboard_read(work: Callable[[], T]) -> T:
        """Run a dashboard read: on the read replica when one is configured and fresh enough,
        else on the primary (always on the primary inside a caller's transaction)."""
        return connection.run(work, transaction=False, replica=True)

    @staticmethod
    def _one(work: Callable[[], T]) -> T:
        """Run a single statement (or reads): atomic on its own, no BEGIN/COMMIT round trips."""
        return connection.run(work, transaction=False)
