"""What every manager domain module shares: the current session, running work on the pool, and
the helpers more than one domain needs. Every mixin of DatabaseManager subclasses ManagerBase."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import peewee as pw

from .. import connection, validate
from ..errors import NotFound
from ..models.base import REQUEST_ID_LENGTH

T = TypeVar("T")


def new_request_id() -> str:
    """A request id for a call the caller gave none: the manager's own retries reuse it.
    128 random bits as 32 hex digits (what uuid4().hex gives, without its object)."""
    return os.urandom(16).hex()


def request_id_of(given: Any, *, max_length: int = REQUEST_ID_LENGTH) -> str:
    """The call's request id: the caller's, validated, else a new one.

    A request id names one logical write. Calling again with an id already stored returns what
    the first call returned and writes nothing: the content of the repeat is not compared.
    """
    if given is None:
        return new_request_id()
    return validate.text("request_id", given, max_length)


def new_internal_order_id() -> str:
    """A unique engine-side order reference for orders created without one."""
    return f"atb-{uuid.uuid4().hex}"


@contextmanager
def missing_parent_is_not_found(parents: str) -> Iterator[None]:
    """Turn a foreign-key violation into NotFound naming the parent row(s) that may be missing."""
    try:
        yield
    except pw.IntegrityError as exc:
        if "foreign key" in str(exc).lower():
            raise NotFound(f"no such {parents}; nothing was written") from exc
        raise


class ManagerBase:
    """State shared by the DatabaseManager mixins: the current trading session."""

    _current_session_id: int | None = None

    def _session(self, session_id: int | None) -> int | None:
        """An explicit session id, else the manager's current session (may be None)."""
        if session_id is None:
            return self._current_session_id
        return validate.integer("session_id", session_id, minimum=1)

    def _session_filter(self, session_id: int | None) -> dict[str, int]:
        """The `session` slot's value of a session-scoped statement: empty for every session
        (no session given and none current)."""
        target = self._session(session_id)
        return {} if target is None else {"session": target}

    # Every manager write is safe to repeat: inserts carry a request id, updates set absolute
    # values or check what an earlier attempt did (`connection.retrying()`). So all of them are
    # run as idempotent: retried on a fresh connection even when the lost connection may have
    # delivered them. A write that is not safe to repeat must pass idempotent=False.

    @staticmethod
    def _run_transaction(work: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run several statements as one transaction (retried on a lost connection)."""
        return connection.run(work, transaction=True, idempotent=idempotent)

    @staticmethod
    def _dashboard_read(work: Callable[[], T]) -> T:
        """Run a dashboard read: on the read replica when one is configured and fresh enough,
        else on the primary (always on the primary inside a caller's transaction)."""
        return connection.run(work, transaction=False, replica=True, idempotent=True)

    @staticmethod
    def _run_statement(work: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run a single statement (or reads): atomic on its own, no BEGIN/COMMIT round trips."""
        return connection.run(work, transaction=False, idempotent=idempotent)
