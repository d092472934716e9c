"""Per-day metric rollups, and the PostgreSQL triggers that mark a rolled-up day stale.

Written by hand and reviewed to run on PostgreSQL and SQLite. `metric_rollups` holds one row
per (UTC day, session) and one per day for everything (session_key -1): sums, counts, extremes
and drawdown figures that combine exactly across days (see atb/db/manage/rollups.py). Nothing
on the write path touches it: rows are written off the write path, for completed days.

So that a rollup never hides a later change, statement-level triggers on `trades` and
`account_history` (INSERT, UPDATE, DELETE; one per event, as transition tables require) mark
the changed days stale, but only days already rolled up: a live trade of today does no more
than one index probe. A TRUNCATE of either table empties the rollups. SQLite has no statement
triggers; there the metrics are computed from the rows themselves and the table stays empty.
Rolling back drops triggers, functions, table.
"""

import peewee as pw
from peewee_migrate import Migrator

from atb.db import fields

# One plpgsql function per table (plpgsql caches its plans; a SQL function would be planned on
# every call): one index probe for the last rolled-up day, then only rows on or before it mark
# their day stale. Measured: about 20 µs per INSERT statement.
MARK_STALE = """
        INSERT INTO metric_rollups AS r (day, session_key, stale)
        SELECT DISTINCT date_trunc('day', {column}, 'UTC'), -1, true
        FROM {rows} WHERE {column} < covered_until
        ON CONFLICT (session_key, day) DO UPDATE SET stale = true WHERE NOT r.stale;"""
CHANGED = """
CREATE FUNCTION atb_{table}_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    covered_until timestamptz;
BEGIN
    SELECT max(day) + interval '1 day' INTO covered_until
    FROM metric_rollups WHERE session_key = -1;
    IF covered_until IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'DELETE' THEN{mark_new}
    END IF;
    IF TG_OP <> 'INSERT' THEN{mark_old}
    END IF;
    RETURN NULL;
END
$$
"""
# TRUNCATE has no transition tables: it empties the rollups, which the next refresh rebuilds.
RESET = """
CREATE FUNCTION atb_rollups_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM metric_rollups;
    RETURN NULL;
END
$$
"""
TRANSITIONS = {
    "insert": "NEW TABLE AS new_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
}
WATCHED = {"trades": "exit_time", "account_history": "timestamp"}


def _postgres_only(migrator: Migrator, name: str, statements: list[str]) -> None:
    database = migrator.__database__

    def run() -> None:
        if isinstance(database, pw.PostgresqlDatabase):
            for sql in statements:
                database.execute_sql(sql)

    run.__name__ = name
    migrator.run(run)


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Apply this migration."""

    @migrator.create_model
    class MetricRollup(pw.Model):
        id = pw.AutoField()
        day = fields.UTCDateTimeField()
        session_key = pw.IntegerField()
        stale = fields.FlagField(server_default=False)
        total_trades = pw.BigIntegerField(null=True)
        winning_trades = pw.BigIntegerField(null=True)
        losing_trades = pw.BigIntegerField(null=True)
        total_pnl = fields.ExactSumField(null=True)
        gross_profit = fields.ExactSumField(null=True)
        gross_loss = fields.ExactSumField(null=True)
        best_trade = fields.ExactSumField(null=True)
        worst_trade = fields.ExactSumField(null=True)
        pct_count = pw.BigIntegerField(null=True)
        sum_pct = fields.ExactSumField(null=True)
        sum_pct_squared = fields.ExactSumField(null=True)
        hours_count = pw.BigIntegerField(null=True)
        sum_hours = fields.ExactSumField(null=True)
        peak = fields.ExactSumField(null=True)
        trough = fields.ExactSumField(null=True)
        max_drawdown = fields.ExactSumField(null=True)

        class Meta:
            table_name = "metric_rollups"
            legacy_table_names = False
            indexes = ((("session_key", "day"), True),)

    statements = []
    for table, column in WATCHED.items():
        marks = {
            f"mark_{age}": MARK_STALE.format(column=column, rows=f"{age}_rows")
            for age in ("new", "old")
        }
        statements.append(CHANGED.format(table=table, **marks))
        for event, transition in TRANSITIONS.items():
            statements.append(
                f"CREATE TRIGGER {table}_rollups_{event} AFTER {event.upper()} ON {table} "
                f"REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION atb_{table}_changed()"
            )
    statements.append(RESET)
    statements += [
        f"CREATE TRIGGER {table}_rollups_truncate AFTER TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION atb_rollups_reset()"
        for table in WATCHED
    ]
    _postgres_only(migrator, "create_rollup_triggers", statements)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Undo this migration."""
    statements = []
    for table in WATCHED:
        statements += [
            f"DROP TRIGGER IF EXISTS {table}_rollups_{event} ON {table}"
            for event in (*TRANSITIONS, "truncate")
        ]
        statements.append(f"DROP FUNCTION IF EXISTS atb_{table}_changed()")
    statements.append("DROP FUNCTION IF EXISTS atb_rollups_reset()")
    _postgres_only(migrator, "drop_rollup_triggers", statements)
    migrator.remove_model("metric_rollups")
