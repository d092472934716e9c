"""A `request_id` on every table the manager logs to, unique: exactly-once writes.

Written by hand and reviewed to run on PostgreSQL and SQLite. A logging call stores its request
id (the caller's, or one the manager generates) with the row; calling again with the same id
finds the row instead of writing a second one. That is what makes the manager's own retry after
a lost connection safe, and a caller's retry after an unknown outcome. The column is nullable
(rows written before this migration keep NULL; NULLs never collide), so adding it rewrites no
table: ADD COLUMN, then CREATE UNIQUE INDEX, on both backends. Rolling back drops the index
and the column (SQLite 3.35+ drops a column in place; no table rebuild, no cascade).
"""

import peewee as pw
from peewee_migrate import Migrator

TABLES = (
    "trading_sessions", "positions", "orders", "partial_trades", "trades", "account_history",
    "account_balances", "system_events", "dynamic_performance_metrics", "risk_adjustments",
    "strategy_executions", "optimization_cycles",
)  # fmt: skip


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Apply this migration."""
    for table in TABLES:
        migrator.add_fields(table, request_id=pw.CharField(max_length=100, null=True, unique=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Undo this migration."""
    for table in reversed(TABLES):
        migrator.remove_fields(table, 'request_id')
