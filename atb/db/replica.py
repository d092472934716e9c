"""The read replica (DATABASE_REPLICA_URL): which dashboard reads it may serve, and when not.

A streaming replica takes dashboard reads off the primary, but only while it is reachable and
fresh. Its lag is measured on the replica itself (no rights on the primary needed) and cached
for a few seconds, so a read normally costs no extra round trip. When the replica is down,
lagging, or not a standby at all, reads go to the primary; one warning says so, and one info
line says when the replica serves again. Writes and the engine's own reads never come here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import peewee as pw

from . import connection
from .errors import DatabaseError, DatabaseUnavailable
from .settings import DatabaseSettings

log = logging.getLogger("atb.db")
T = TypeVar("T")

# Replayed everything received and still streaming: caught up (an idle primary writes nothing, so
# the age of the last replayed commit says nothing then). Otherwise the age of the last replayed
# commit is the lag; NULL (nothing replayed yet while not streaming) means unknown.
LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                 AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
                 THEN 0
            ELSE EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())
       END
""".strip()

_RECHECK_DOWN_S = 30.0  # an unusable replica is tried again after this long
_RECHECK_UP_MAX_S = 5.0  # a healthy one is re-measured at least this often
_RECOVERY_CONFLICT = "40001"  # a standby cancelled the query to replay WAL: the primary answers


@dataclass(frozen=True)
class ReplicaHealth:
    """What the last check found; `problem` is None when the replica may serve reads."""

    url: str  # redacted
    reachable: bool
    in_recovery: bool | None
    lag_s: float | None
    max_lag_s: int
    problem: str | None

    @property
    def usable(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "standby": self.in_recovery,
            "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
            "max_lag_s": self.max_lag_s,
            "serving_reads": self.usable,
            "problem": self.problem,
        }


def measure(db: pw.Database, url: str, max_lag_s: int) -> ReplicaHealth:
    """Connect to the replica and judge it: reachable, a standby, lag within `max_lag_s`."""
    try:
        with connection.database.routed_to(db):
            in_recovery, lag = connection._run(
                lambda: db.execute_sql(LAG_SQL).fetchone(), transaction=False, retry=False
            )
    except DatabaseError as exc:
        return ReplicaHealth(url, False, None, None, max_lag_s, f"unreachable: {_line(exc)}")
    if not in_recovery:
        standby = "not a standby (pg_is_in_recovery() is false): not a replica of the primary"
        return ReplicaHealth(url, True, False, None, max_lag_s, standby)
    lag_s = math.inf if lag is None else max(0.0, float(lag))
    problem: str | None = None
    if lag_s > max_lag_s:
        shown = (
            "unknown (not streaming, nothing replayed)" if lag_s == math.inf else f"{lag_s:.1f} s"
        )
        problem = f"lags {shown} (limit ATB_DB_REPLICA_MAX_LAG_S={max_lag_s})"
    return ReplicaHealth(url, True, True, lag_s, max_lag_s, problem)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class ReadReplica:
    """A replica's pool plus the cached verdict on whether it may serve dashboard reads."""

    def __init__(self, db: pw.Database, settings: DatabaseSettings):
        self.db = db
        self.url = settings.redacted_replica_url or "the read replica"
        self.max_lag_s = settings.replica_max_lag_s
        self._recheck_up_s = min(_RECHECK_UP_MAX_S, self.max_lag_s / 2)
        self._lock = threading.Lock()
        self._health: ReplicaHealth | None = None
        self._checked_at = -math.inf
        self._warned = False

    def health(self, *, fresh: bool = False) -> ReplicaHealth:
        """The replica's health, measured again when the cached verdict is old (or `fresh`)."""
        now = time.monotonic()
        health = self._health
        if not fresh and health is not None:
            age = now - self._checked_at
            if age < (self._recheck_up_s if health.usable else _RECHECK_DOWN_S):
                return health
        # One thread measures; the others keep using the last verdict meanwhile.
        if not self._lock.acquire(blocking=health is None or fresh):
            return health  # type: ignore[return-value]
        try:
            health = measure(self.db, self.url, self.max_lag_s)
            self._record(health)
            return health
        finally:
            self._lock.release()

    def _record(self, health: ReplicaHealth) -> None:
        self._health = health
        self._checked_at = time.monotonic()
        if not health.usable and not self._warned:
            self._warned = True
            log.warning(
                "read replica %s %s: dashboard reads go to the primary until it recovers",
                self.url,
                health.problem,
            )
        elif health.usable and self._warned:
            self._warned = False
            log.info("read replica %s serves dashboard reads again", self.url)

    def read(self, work: Callable[[], T], *, transaction: bool) -> T:
        """Run a dashboard read on the replica when it is usable, else (or if it fails) on the
        primary. Inside a caller's transaction the primary answers: the read must see its writes."""
        primary = connection.database.primary
        if primary is None or primary.in_transaction() or not self.health().usable:
            return connection._run(work, transaction=transaction, idempotent=True)
        try:
            with connection.database.routed_to(self.db):
                # No retry budget on the replica: the primary answers at once instead.
                return connection._run(work, transaction=transaction, idempotent=True, retry=False)
        except DatabaseUnavailable as exc:
            self._record(
                ReplicaHealth(self.url, False, None, None, self.max_lag_s, f"failed: {_line(exc)}")
            )
        except DatabaseError as exc:
            cause = connection._driver_error(exc.__cause__) if exc.__cause__ else None
            if getattr(cause, "pgcode", None) != _RECOVERY_CONFLICT:
                raise
            log.info(
                "read replica %s cancelled a read (recovery conflict): the primary answers",
                self.url,
            )
        return connection._run(work, transaction=transaction, idempotent=True)
