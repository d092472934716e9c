"""DatabaseManager: the logging and reading API the engine, backtester, dashboards and ML call.

A thin face: it binds the database and applies migrations on an empty one; the method bodies
live in atb/db/manage/, one module per domain. Method and parameter names follow the earlier
SQLAlchemy layer so scripts port by changing imports (README.md, "DatabaseManager methods",
lists every method with its contract).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import peewee as pw

from . import connection, migrate
from .errors import ConfigurationError
from .manage.accounts import AccountsMixin
from .manage.base import ManagerBase
from .manage.connection import ConnectionMixin
from .manage.events import EventsMixin
from .manage.maintenance import MaintenanceMixin
from .manage.metrics import MetricsMixin
from .manage.optimization import OptimizationMixin
from .manage.orders import OrdersMixin
from .manage.positions import PositionsMixin
from .manage.predictions import PredictionCacheMixin
from .manage.recovery import RecoveryMixin
from .manage.sessions import SessionsMixin
from .manage.trades import TradesMixin

C = TypeVar("C", bound=type)


def _refuses_when_rebound(cls: C) -> C:
    """Make every public method check first that the proxy still holds this manager's database.

    The models share one binding per process; a manager whose database was replaced (by
    `replace=True`) or unbound must fail loudly instead of writing into someone else's database.
    """
    for klass in cls.__mro__:
        for name, member in list(vars(klass).items()):
            if name.startswith("_") or name in _UNGUARDED or name in vars(cls):
                continue
            if callable(member) and not isinstance(member, (staticmethod, classmethod, type)):
                setattr(cls, name, _guarded(member))
    return cls


_UNGUARDED = frozenset({"close"})  # closing a manager whose database is gone stays harmless


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(self: DatabaseManager, *args: Any, **kwargs: Any) -> Any:
        if connection.database.primary is not self.database:
            raise ConfigurationError(
                "this DatabaseManager's database is no longer bound (another manager replaced it, "
                "or atb.db.disconnect() was called); create a new DatabaseManager"
            )
        return method(self, *args, **kwargs)

    return guarded


@_refuses_when_rebound
class DatabaseManager(
    ConnectionMixin,
    SessionsMixin,
    TradesMixin,
    PositionsMixin,
    OrdersMixin,
    AccountsMixin,
    RecoveryMixin,
    MetricsMixin,
    EventsMixin,
    OptimizationMixin,
    PredictionCacheMixin,
    MaintenanceMixin,
    ManagerBase,
):
    """Log and read trading state. One database per process: it binds the shared model proxy.

    `database_url`: as `atb.db.connect()` resolves it (DATABASE_URL, ..., local server).
    `database`: an already-built Peewee database to bind instead (tests, embedding apps).
    Several managers on the same database share its pool. A manager for a *different* database
    raises ConfigurationError unless `replace=True`; the replaced manager then refuses every call
    instead of silently writing into the new database.
    `apply_migrations`: True applies pending migrations, False never does, None (default)
    brings an empty database to head and only warns about pending migrations otherwise.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        allow_sqlite: bool = False,
        apply_migrations: bool | None = None,
        database: pw.Database | None = None,
        replace: bool = False,
    ):
        if database is not None:
            self.database = connection.bind(database, replace=replace)
        else:
            self.database = connection.connect(
                database_url, allow_sqlite=allow_sqlite, replace=replace
            )
        self._current_session_id = None
        migrate.ensure_schema(apply_migrations)
