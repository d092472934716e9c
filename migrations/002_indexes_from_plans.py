"""Indexes chosen from the query plans of the engine's and the dashboards' reads.

Written by hand (peewee-migrate 2.3 mis-generates DecimalField/enum/JSON fields) and reviewed to
run on PostgreSQL and SQLite:

- trades(symbol, entry_time) replaces trades(symbol): get_trades_by_symbol_and_date is one
  index range scan in entry-time order instead of a BitmapAnd over trades(symbol) and
  (entry_time, exit_time); a lookup by symbol alone still uses its leading column.
- positions(entry_time, id) WHERE status = 'OPEN': get_active_positions() reads the open
  positions in its order without touching the closed ones, whatever their number (PostgreSQL
  15 chose a full scan of positions_entry_time before). With a session, (session_id, status)
  already serves it.
"""

import peewee as pw
from peewee_migrate import Migrator

from atb.db import migration_ops


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Apply this migration."""
    migrator.add_index('trades', 'symbol', 'entry_time')
    migration_ops.drop_index(migrator, 'trades', 'symbol')
    migration_ops.add_partial_index(migrator, 'positions', 'entry_time', 'id', where=pw.SQL("status = 'OPEN'"))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Undo this migration."""
    migration_ops.drop_index(migrator, 'positions', 'entry_time', 'id')
    migrator.add_index('trades', 'symbol')
    migration_ops.drop_index(migrator, 'trades', 'symbol', 'entry_time')
