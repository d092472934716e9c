"""Order ids are unique among rows without a session, too.

Written by hand and reviewed to run on PostgreSQL and SQLite. trades(order_id, session_id) and
orders(internal_order_id, session_id) are unique, but NULL session ids are distinct from each
other, so the same exchange order id could be logged twice when no session was given. A partial
unique index over the session-less rows closes that. Existing duplicates stop the migration
with their ids listed (nothing is changed): resolve them, then migrate again.
"""

import peewee as pw
from peewee_migrate import Migrator

from atb.db import migration_ops
from atb.db.errors import MigrationError

_CHECKS = (("trades", "order_id"), ("orders", "internal_order_id"))


def _refuse_duplicates(database: pw.Database) -> None:
    for table, column in _CHECKS:
        rows = database.execute_sql(
            f'SELECT "{column}", COUNT(*) FROM "{table}" WHERE session_id IS NULL '
            f'AND "{column}" IS NOT NULL GROUP BY "{column}" HAVING COUNT(*) > 1 LIMIT 5'
        ).fetchall()
        if rows:
            shown = ", ".join(f"{value!r} ({count} rows)" for value, count in rows)
            raise MigrationError(
                f"{table}.{column} repeats among rows without a session: {shown}; make them "
                "unique (or give them their session), then run atb db migrate again"
            )


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Apply this migration."""
    if not fake:
        migrator.run(lambda: _refuse_duplicates(database))
    migration_ops.add_partial_index(migrator, 'trades', 'order_id', where=pw.SQL("session_id IS NULL"), unique=True)
    migration_ops.add_partial_index(migrator, 'orders', 'internal_order_id', where=pw.SQL("session_id IS NULL"), unique=True)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Undo this migration."""
    migration_ops.drop_index(migrator, 'orders', 'internal_order_id')
    migration_ops.drop_index(migrator, 'trades', 'order_id')
