"""DatabaseManager: the logging and reading API the engine, backtester, dashboards and ML call.

A thin face: it binds the database and applies migrations on an empty one; the method bodies
live in atb/db/manage/, one module per domain. Method and parameter names follow the earlier
SQLAlchemy layer so scripts port by changing imports (README.md, "DatabaseManager methods",
lists every method with its contract).
"""

from __future__ import annotations

import peewee as pw

from . import connection, migrate
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
from .manage.sessions import SessionsMixin
from .manage.trades import TradesMixin


class DatabaseManager(
    ConnectionMixin,
    SessionsMixin,
    TradesMixin,
    PositionsMixin,
    OrdersMixin,
    AccountsMixin,
    MetricsMixin,
    EventsMixin,
    OptimizationMixin,
    PredictionCacheMixin,
    MaintenanceMixin,
    ManagerBase,
):
    """Log and read trading state. One manager per process: it binds the shared model proxy.

    `database_url`: as `atb.db.connect()` resolves it (DATABASE_URL, ..., local server).
    `database`: an already-built Peewee database to bind instead (tests, embedding apps).
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
    ):
        if database is not None:
            self.database = connection.bind(database)
        else:
            self.database = connection.connect(database_url, allow_sqlite=allow_sqlite)
        self._current_session_id = None
        migrate.ensure_schema(apply_migrations)
