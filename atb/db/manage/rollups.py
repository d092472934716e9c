"""Per-day rollups: all-time metrics in O(days), exactly equal to the aggregate over the rows.

PostgreSQL only (SQLite, the unit tests' backend, aggregates the rows themselves). No write
path touches `metric_rollups`: a trade or snapshot insert does one index probe in a trigger
(migration 005) and nothing else, so concurrent writers of one session and day never wait for
each other. Completed UTC days are rolled up later, by `refresh` (run by the first metrics read
that finds work due, or by `DatabaseManager.refresh_metric_rollups()`), in chunks of days, each
one transaction that takes SHARE locks on `trades` and `account_history` (so no insert can slip
between the aggregate and its row) and then an EXCLUSIVE lock on `metric_rollups` (so two
refreshers cannot roll up the same day).

A read combines the rows of the days rolled up and not stale with a live aggregate of the rest
(the days after the last rolled-up day and any stale day), in one statement; it is correct
whatever the rollups' state, only faster when they are current. Exactness:
- counts and sums are exact numeric sums, so totals are equal; an average is SUM / COUNT, which
  is how PostgreSQL's AVG(numeric) divides, so averages are equal digit for digit;
- max drawdown is order-dependent: per day (and session) a row keeps the peak, the trough and
  the max drawdown with the running peak starting at the day. Across days in order the running
  peak before a day is the max of the earlier peaks P, and the day's worst fall is
  max(its own max drawdown, (P − its trough) / P): (p − b) / p grows with p for balances ≥ 0
  (which atb enforces), so the earlier peak matters only at the day's trough.
The SQL is text: it is PostgreSQL's (GROUPING SETS, FILTER, window frames, date_trunc in UTC)
and lives here alone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from .. import connection
from ..models.rollups import ALL_SESSIONS

DAYS_PER_TRANSACTION = 7
_DAY = "interval '1 day'"
_UTC_DAY = "date_trunc('day', {column}, 'UTC')"
_HOURS = "EXTRACT(EPOCH FROM exit_time - entry_time) / 3600"  # as metrics' full scan has it
_FALL = "({peak} - balance) * 100.0 / {peak}"  # as metrics' full scan has it

# Days due: stale ones, then every completed day after the last rolled-up one (from the first
# day holding data when nothing is rolled up yet; yesterday alone when there is none before
# today, so the coverage marker exists; LEAST ignores NULL), oldest first.
_DUE_DAYS = f"""
WITH cover AS (SELECT max(day) AS last FROM metric_rollups WHERE session_key = {ALL_SESSIONS}),
first_day AS (
    SELECT {_UTC_DAY.format(column="least((SELECT min(exit_time) FROM trades),"
                            " (SELECT min(timestamp) FROM account_history))")} AS day
),
yesterday AS (SELECT {_UTC_DAY.format(column="now()")} - {_DAY} AS day)
SELECT day FROM metric_rollups WHERE session_key = {ALL_SESSIONS} AND stale
UNION
SELECT generate_series(
    COALESCE((SELECT last FROM cover) + {_DAY},
             LEAST((SELECT day FROM first_day), (SELECT day FROM yesterday))),
    (SELECT day FROM yesterday), {_DAY})
ORDER BY 1
LIMIT %(limit)s
"""

_ROLL_UP = f"""
WITH days AS (SELECT unnest(%(days)s::timestamptz[]) AS day),
day_trades AS (
    SELECT days.day, t.session_id, t.pnl, t.pnl_percent, {_HOURS} AS hours
    FROM days JOIN trades t ON t.exit_time >= days.day AND t.exit_time < days.day + {_DAY}
),
trade_sums AS (
    SELECT day,
           CASE WHEN GROUPING(session_id) = 1 THEN {ALL_SESSIONS} ELSE session_id END AS key,
           COUNT(*) AS total_trades,
           COUNT(*) FILTER (WHERE pnl > 0) AS winning_trades,
           COUNT(*) FILTER (WHERE pnl < 0) AS losing_trades,
           SUM(pnl) AS total_pnl,
           SUM(pnl) FILTER (WHERE pnl > 0) AS gross_profit,
           SUM(pnl) FILTER (WHERE pnl < 0) AS gross_loss,
           MAX(pnl) AS best_trade, MIN(pnl) AS worst_trade,
           COUNT(pnl_percent) AS pct_count, SUM(pnl_percent) AS sum_pct,
           SUM(pnl_percent * pnl_percent) AS sum_pct_squared,
           COUNT(hours) AS hours_count, SUM(hours) AS sum_hours
    FROM day_trades
    GROUP BY GROUPING SETS ((day, session_id), (day))
    HAVING GROUPING(session_id) = 1 OR session_id IS NOT NULL
),
day_snapshots AS (
    SELECT days.day, a.session_id, a.balance,
           MAX(a.balance) OVER (PARTITION BY days.day, a.session_id ORDER BY a.timestamp, a.id
                                ROWS UNBOUNDED PRECEDING) AS session_peak,
           MAX(a.balance) OVER (PARTITION BY days.day ORDER BY a.timestamp, a.id
                                ROWS UNBOUNDED PRECEDING) AS all_peak
    FROM days JOIN account_history a
      ON a.timestamp >= days.day AND a.timestamp < days.day + {_DAY}
),
account_sums AS (
    SELECT day, session_id AS key, MAX(balance) AS peak, MIN(balance) AS trough,
           MAX({_FALL.format(peak="session_peak")}) FILTER (WHERE session_peak > 0)
               AS max_drawdown
    FROM day_snapshots WHERE session_id IS NOT NULL GROUP BY day, session_id
    UNION ALL
    SELECT day, {ALL_SESSIONS}, MAX(balance), MIN(balance),
           MAX({_FALL.format(peak="all_peak")}) FILTER (WHERE all_peak > 0)
    FROM day_snapshots GROUP BY day
),
combined AS (
    SELECT * FROM trade_sums
    FULL JOIN account_sums USING (day, key)
    FULL JOIN (SELECT day, {ALL_SESSIONS} AS key FROM days) AS every_day USING (day, key)
),
written AS (
    INSERT INTO metric_rollups (
        day, session_key, stale, total_trades, winning_trades, losing_trades, total_pnl,
        gross_profit, gross_loss, best_trade, worst_trade, pct_count, sum_pct,
        sum_pct_squared, hours_count, sum_hours, peak, trough, max_drawdown)
    SELECT day, key, false, COALESCE(total_trades, 0), COALESCE(winning_trades, 0),
           COALESCE(losing_trades, 0), total_pnl, gross_profit, gross_loss, best_trade,
           worst_trade, COALESCE(pct_count, 0), sum_pct, sum_pct_squared,
           COALESCE(hours_count, 0), sum_hours, peak, trough, max_drawdown
    FROM combined
    RETURNING *
)
INSERT INTO performance_metrics AS pm (
    period, period_start, period_end, session_id, total_trades, winning_trades, losing_trades,
    win_rate, total_return, avg_win, avg_loss, best_trade_pnl, worst_trade_pnl, updated_at)
SELECT 'daily', day, day + {_DAY}, session_key, total_trades, winning_trades, losing_trades,
       ROUND(100.0 * winning_trades / total_trades, 8), total_pnl,
       COALESCE(ROUND(gross_profit / NULLIF(winning_trades, 0), 8), 0),
       COALESCE(ROUND(gross_loss / NULLIF(losing_trades, 0), 8), 0),
       best_trade, worst_trade, now()
FROM written
WHERE session_key > 0 AND total_trades > 0
  AND EXISTS (SELECT 1 FROM trading_sessions s WHERE s.id = written.session_key)
ON CONFLICT (period, period_start, session_id) DO UPDATE SET
    total_trades = EXCLUDED.total_trades, winning_trades = EXCLUDED.winning_trades,
    losing_trades = EXCLUDED.losing_trades, win_rate = EXCLUDED.win_rate,
    total_return = EXCLUDED.total_return, avg_win = EXCLUDED.avg_win,
    avg_loss = EXCLUDED.avg_loss, best_trade_pnl = EXCLUDED.best_trade_pnl,
    worst_trade_pnl = EXCLUDED.worst_trade_pnl, updated_at = EXCLUDED.updated_at
"""

_CLEAR = "DELETE FROM metric_rollups WHERE day = ANY(%(days)s::timestamptz[])"
_LOCK = (
    "SET LOCAL jit = off",  # see _NO_JIT
    "LOCK TABLE trades, account_history IN SHARE MODE",
    "LOCK TABLE metric_rollups IN EXCLUSIVE MODE",
)


def _live(table: str, time_column: str, columns: str, session: bool) -> str:
    """Rows of `table` not covered by a current rollup: after the last rolled-up day, or on a
    stale day (two index range scans).

    The bound after the last day is a subquery, unknown when the plan is made: alone, the
    planner guesses a third of the table matches and, where the table is not stored in time
    order, reads all of it. Paired with an upper bound that is also a subquery (infinity) it
    guesses a narrow range (0.5 %) and takes the time index, which is what the range is."""
    where = " AND session_id = %(session)s" if session else ""
    return f"""
    SELECT {columns} FROM {table}
    WHERE {time_column} >= COALESCE((SELECT last FROM cover) + {_DAY}, '-infinity')
      AND {time_column} < (SELECT 'infinity'::timestamptz){where}
    UNION ALL
    SELECT {columns} FROM {table} JOIN stale
      ON {time_column} >= stale.day AND {time_column} < stale.day + {_DAY}{where}"""


def _metrics_sql(session: bool) -> str:
    key = "%(session)s" if session else str(ALL_SESSIONS)
    trade_columns = f"pnl, pnl_percent, {_HOURS} AS hours"
    return f"""
WITH cover AS (SELECT max(day) AS last FROM metric_rollups WHERE session_key = {ALL_SESSIONS}),
stale AS (SELECT day FROM metric_rollups WHERE session_key = {ALL_SESSIONS} AND stale),
rolled AS (
    SELECT * FROM metric_rollups
    WHERE session_key = {key} AND NOT stale AND day <= (SELECT last FROM cover)
      AND day NOT IN (SELECT day FROM stale)
),
live_trades AS ({_live("trades", "exit_time", trade_columns, session)}),
sums AS (
    SELECT total_trades, winning_trades, losing_trades, total_pnl, gross_profit, gross_loss,
           best_trade, worst_trade, pct_count, sum_pct, sum_pct_squared, hours_count, sum_hours
    FROM rolled
    UNION ALL
    SELECT COUNT(*), COUNT(*) FILTER (WHERE pnl > 0), COUNT(*) FILTER (WHERE pnl < 0),
           SUM(pnl), SUM(pnl) FILTER (WHERE pnl > 0), SUM(pnl) FILTER (WHERE pnl < 0),
           MAX(pnl), MIN(pnl), COUNT(pnl_percent), SUM(pnl_percent),
           SUM(pnl_percent * pnl_percent), COUNT(hours), SUM(hours)
    FROM live_trades
),
live_snapshots AS ({_live("account_history", "timestamp", "timestamp, id, balance", session)}),
live_running AS (
    SELECT {_UTC_DAY.format(column="timestamp")} AS day, balance,
           MAX(balance) OVER (PARTITION BY {_UTC_DAY.format(column="timestamp")}
                              ORDER BY timestamp, id ROWS UNBOUNDED PRECEDING) AS running_peak
    FROM live_snapshots
),
segments AS (
    SELECT day, peak, trough, max_drawdown FROM rolled WHERE peak IS NOT NULL
    UNION ALL
    SELECT day, MAX(balance), MIN(balance),
           MAX({_FALL.format(peak="running_peak")}) FILTER (WHERE running_peak > 0)
    FROM live_running GROUP BY day
),
ordered AS (
    SELECT trough, max_drawdown,
           MAX(peak) OVER (ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
               AS earlier_peak
    FROM segments
)
SELECT SUM(total_trades), SUM(winning_trades), SUM(losing_trades), SUM(total_pnl),
       SUM(gross_profit), SUM(gross_loss),
       SUM(gross_profit) / NULLIF(SUM(winning_trades), 0),
       SUM(gross_loss) / NULLIF(SUM(losing_trades), 0),
       MAX(best_trade), MIN(worst_trade),
       SUM(sum_pct) / NULLIF(SUM(pct_count), 0),
       SUM(sum_pct_squared) / NULLIF(SUM(pct_count), 0),
       SUM(sum_hours) / NULLIF(SUM(hours_count), 0),
       (SELECT MAX(GREATEST(max_drawdown, CASE WHEN earlier_peak > 0 THEN
            (earlier_peak - trough) * 100.0 / earlier_peak END))
        FROM ordered),
       (SELECT last IS NULL OR last < {_UTC_DAY.format(column="now()")} - {_DAY} FROM cover)
         OR EXISTS (SELECT 1 FROM stale)
FROM sums
"""


# The planner cannot know at plan time how few rows lie after the last rolled-up day (the bound
# is a subquery), so it estimates a third of each table and JIT-compiles the plan: 0.9 s spent
# compiling a 3 ms query. SET LOCAL in the same simple-query message holds for that message's
# implicit transaction only (safe under PgBouncer transaction pooling; inside a caller's
# transaction it lasts until that transaction ends).
_NO_JIT = "SET LOCAL jit = off; "
_METRICS_SQL = {session: _NO_JIT + _metrics_sql(session) for session in (False, True)}


def read_metrics(session_id: int | None) -> tuple[tuple[Any, ...], bool]:
    """The all-time aggregates (metrics' `_AGGREGATE_NAMES` order) of one session or of all,
    and whether a refresh is due."""
    params = {} if session_id is None else {"session": session_id}
    row = connection.bound_database().execute_sql(_METRICS_SQL[session_id is not None], params)
    *figures, due = row.fetchone()
    return tuple(figures), bool(due)


def refresh(days_per_transaction: int = DAYS_PER_TRANSACTION, transactions: int | None = None) -> int:
    """Roll up the days due, oldest first, `days_per_transaction` days per transaction (each
    blocks writers of trades and snapshots while it runs: tens of milliseconds a day at 5 M
    trades a year), all of them or at most `transactions` chunks; returns the number of days
    rolled up (0 on SQLite, which has no rollups)."""
    if not connection.is_postgres():
        return 0
    done, chunks = 0, 0
    while transactions is None or chunks < transactions:
        rolled = connection.run(lambda: _roll_up_chunk(days_per_transaction), transaction=True,
                                idempotent=True)  # fmt: skip
        done, chunks = done + rolled, chunks + 1
        if rolled < days_per_transaction:
            break
    return done


def _roll_up_chunk(limit: int) -> int:
    db: pw.Database = connection.bound_database()
    for sql in _LOCK:
        db.execute_sql(sql)
    days: list[dt.datetime] = [
        day for (day,) in db.execute_sql(_DUE_DAYS, {"limit": limit}).fetchall() if day
    ]
    if days:
        db.execute_sql(_CLEAR, {"days": days})
        db.execute_sql(_ROLL_UP, {"days": days})
    return len(days)
