"""The UI's reads: keyset-paged, sortable tables over the atb models, and the equity curve.

Every table is read one page at a time (LIMIT page + 1, never OFFSET, never the whole table):
the page after row N is `WHERE (sort key, id) beyond N's` with N's key fetched by primary key,
so page 10,000 costs what page 1 costs when the sort column is indexed. All reads are dashboard
reads: with DATABASE_REPLICA_URL set they go to the read replica (see README, "Read replicas").

The equity curve is downsampled in SQL: one aggregate groups a session's snapshots into at most
`EQUITY_BUCKETS` time buckets (min, max and last equity of each), so a session with a million
snapshots sends a few hundred rows to Python. That statement is the one hand-written SQL here.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import peewee as pw

from atb.db import connection
from atb.db.enums import EventType, PositionStatus
from atb.db.models import AccountHistory, Order, Position, SystemEvent, Trade, TradingSession
from atb.db.models.base import BaseModel

T = TypeVar("T")
SEVERITIES = ("info", "warning", "error", "critical")
EVENT_TYPES = tuple(kind.value for kind in EventType)
EQUITY_BUCKETS = 400
# Above this many snapshots a session's curve is sampled (see equity_curve).
FULL_RESOLUTION_LIMIT = 100_000
SAMPLE_PER_BUCKET_END = 60


def dashboard_read(work: Callable[[], T]) -> T:
    """Run `work` as a dashboard read (the replica when configured and fresh, else the primary)."""
    return connection.run(work, transaction=False, replica=True)


# ---- keyset paging --------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A sortable column: its URL name, the expression it sorts by, and its default direction."""

    name: str
    expression: Any
    descending: bool = True


@dataclass(frozen=True)
class TableSpec:
    """What a paged table may be sorted by; `leading` keys (e.g. open positions first) always
    come before the chosen column."""

    model: type[BaseModel]
    columns: tuple[Column, ...]
    default: str
    leading: tuple[tuple[Any, bool], ...] = ()

    def column(self, name: str | None) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        return self.column(self.default)

    @property
    def sortable(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


@dataclass
class Page:
    """One page of rows plus what the links need: sort, direction, and the cursors."""

    rows: list[Any]
    sort: str
    descending: bool
    next_after: int | None = None
    prev_before: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _beyond(keys: Sequence[tuple[Any, bool]], values: Sequence[Any]) -> pw.Expression:
    """Rows strictly after `values` in the order `keys` ((expression, descending) pairs).

    Spelt as OR-chains (any mix of directions), plus a bound on the first key alone that an
    index on it can seek to, so a deep page does not scan the rows before it.
    """
    alternatives = []
    for i, (expr, descending) in enumerate(keys):
        term = expr < values[i] if descending else expr > values[i]
        for prior, value in zip(keys[:i], values[:i], strict=False):
            term = (prior[0] == value) & term
        alternatives.append(term)
    condition = alternatives[0]
    for term in alternatives[1:]:
        condition = condition | term
    first, first_desc = keys[0]
    bound = first <= values[0] if first_desc else first >= values[0]
    return bound & condition


def keyset_page(
    spec: TableSpec,
    query: Any,
    *,
    sort: str | None,
    direction: str | None,
    after: int | None,
    before: int | None,
    limit: int,
) -> Page:
    """The page of `query` after row `after` (or before row `before`), `limit` rows at most."""
    column = spec.column(sort)
    descending = column.descending if direction not in ("asc", "desc") else direction == "desc"
    model = spec.model
    keys = [*spec.leading, (column.expression, descending), (model.id, descending)]
    cursor = after if after is not None else before
    backwards = after is None and before is not None
    if cursor is not None:
        values = (
            model.select(*(expr for expr, _ in keys)).where(model.id == cursor).tuples().first()
        )
        if values is not None:
            walk = [(expr, desc != backwards) for expr, desc in keys]
            query = query.where(_beyond(walk, values))
        else:
            backwards = False  # the cursor row is gone: start again from the first page
    order = [(expr.desc() if desc != backwards else expr.asc()) for expr, desc in keys]
    rows = list(query.order_by(*order).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    page = Page(rows=rows, sort=column.name, descending=descending)
    if rows:
        if (more and not backwards) or (backwards and cursor is not None):
            page.next_after = rows[-1].id
        if (cursor is not None and not backwards) or (backwards and more):
            page.prev_before = rows[0].id
    return page


# ---- tables ---------------------------------------------------------------------------------

SESSIONS = TableSpec(
    TradingSession,
    (
        Column("start", TradingSession.start_time),
        Column("strategy", TradingSession.strategy_name, descending=False),
        Column("id", TradingSession.id),
    ),
    default="start",
)
TRADES = TableSpec(
    Trade,
    (
        Column("exit", Trade.exit_time),
        Column("entry", Trade.entry_time),
        Column("pnl", Trade.pnl),
        Column("symbol", Trade.symbol, descending=False),
    ),
    default="exit",
)
_CLOSED_RANK = pw.Case(None, ((Position.status == PositionStatus.OPEN.value, 0),), 1)
POSITIONS = TableSpec(
    Position,
    (
        Column("entry", Position.entry_time),
        Column("symbol", Position.symbol, descending=False),
        Column("size", Position.size),
    ),
    default="entry",
    leading=((_CLOSED_RANK, False),),
)
EVENTS = TableSpec(
    SystemEvent,
    (Column("time", SystemEvent.timestamp),),
    default="time",
)


def sessions_page(**paging: Any) -> Page:
    """A page of trading sessions (newest first by default)."""
    return dashboard_read(lambda: keyset_page(SESSIONS, TradingSession.select(), **paging))


# Sorts no index serves: a session with more trades than this offers only the indexed ones
# (exit and entry time), so its page never sorts a million rows.
UNINDEXED_TRADE_SORTS = ("pnl", "symbol")
UNINDEXED_SORT_LIMIT = 100_000


def trade_sorts(session_id: int) -> tuple[str, ...]:
    """The trade columns this session's table may be sorted by (see UNINDEXED_SORT_LIMIT)."""
    counted = dashboard_read(
        lambda: (
            Trade.select(Trade.id)
            .where(Trade.session == session_id)
            .limit(UNINDEXED_SORT_LIMIT + 1)
            .count()
        )
    )
    if counted <= UNINDEXED_SORT_LIMIT:
        return TRADES.sortable
    return tuple(name for name in TRADES.sortable if name not in UNINDEXED_TRADE_SORTS)


def trades_page(session_id: int, *, sortable: Sequence[str] | None = None, **paging: Any) -> Page:
    """A page of the session's trades (newest exit first by default)."""
    if sortable is not None and paging.get("sort") not in sortable:
        paging["sort"] = None
    query = Trade.select().where(Trade.session == session_id)
    return dashboard_read(lambda: keyset_page(TRADES, query, **paging))


def positions_page(session_id: int, **paging: Any) -> Page:
    """Positions of a session, open ones first, each with its orders (`page.extra['orders']`)."""
    query = Position.select().where(Position.session == session_id)

    def work() -> Page:
        page = keyset_page(POSITIONS, query, **paging)
        page.extra["orders"] = orders_of([row.id for row in page.rows])
        return page

    return dashboard_read(work)


ORDERS_PER_PAGE = 500


def orders_of(position_ids: list[int]) -> dict[int, list[Order]]:
    """The orders of these positions (one query, at most ORDERS_PER_PAGE in all)."""
    if not position_ids:
        return {}
    grouped: dict[int, list[Order]] = {pid: [] for pid in position_ids}
    query = (
        Order.select()
        .where(Order.position.in_(position_ids))
        .order_by(Order.position, Order.created_at, Order.id)
        .limit(ORDERS_PER_PAGE)
    )
    for order in query:
        grouped[order.position_id].append(order)
    return grouped


def events_page(
    *,
    severity: str | None = None,
    event_type: str | None = None,
    session_id: int | None = None,
    **paging: Any,
) -> Page:
    """System events, newest first, filtered by severity, type and session."""
    query = SystemEvent.select()
    if severity:
        query = query.where(SystemEvent.severity == severity)
    if event_type:
        query = query.where(SystemEvent.event_type == event_type)
    if session_id is not None:
        query = query.where(SystemEvent.session == session_id)
    return dashboard_read(lambda: keyset_page(EVENTS, query, **paging))


def session_row(session_id: int) -> TradingSession | None:
    return dashboard_read(
        lambda: TradingSession.select().where(TradingSession.id == session_id).first()
    )


# ---- session figures ------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionFigures:
    """Trades, P&L, win rate and max drawdown of one session, and where they come from."""

    trades: Any
    pnl: Any
    win_rate: Any
    max_drawdown: Any
    live: bool  # computed now by get_performance_metrics (active session) vs stored at its end
    pending: bool = False  # still being computed: the page shows "computing" for now


PENDING = SessionFigures(None, None, None, None, live=True, pending=True)


class FiguresCache:
    """get_performance_metrics for running sessions, computed off the request thread and kept
    `ttl_s` seconds per session.

    A page waits at most `wait_s` for a session's figures: a running session with a million
    trades takes over a second to add up, and the page must not. Past the wait the page shows
    them as being computed (the next view has them); a stale value is shown while it refreshes.
    """

    def __init__(self, manager: Any, ttl_s: float = 15.0, wait_s: float = 0.03) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.manager = manager
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[float, SessionFigures]] = {}
        self._running: dict[int, Future[SessionFigures]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atb-ui-figures")

    def figures(self, session: TradingSession) -> SessionFigures:
        """Ended sessions: the totals stored when they ended (exact, as stored); running ones:
        get_performance_metrics over the session's trades and snapshots."""
        if session.end_time is not None and not session.is_active:
            return SessionFigures(
                session.total_trades, session.total_pnl, session.win_rate, session.max_drawdown,
                live=False,
            )  # fmt: skip
        return self.live(session.id)

    def live(self, session_id: int) -> SessionFigures:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(session_id)
            if cached is not None and now - cached[0] < self.ttl_s:
                return cached[1]
            future = self._running.get(session_id)
            if future is None:
                future = self._pool.submit(self._compute, session_id)
                self._running[session_id] = future
        if cached is not None and not future.done():
            return cached[1]  # stale while it refreshes
        try:
            figures = future.result(timeout=self.wait_s)
        except FutureTimeout:
            return PENDING
        finally:
            if future.done():
                with self._lock:
                    if self._running.get(session_id) is future:
                        del self._running[session_id]
        return figures

    def _compute(self, session_id: int) -> SessionFigures:
        metrics = self.manager.get_performance_metrics(period="all-time", session_id=session_id)
        figures = SessionFigures(
            metrics["total_trades"], metrics["total_pnl"], metrics["win_rate"],
            metrics["max_drawdown"], live=True,
        )  # fmt: skip
        with self._lock:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[session_id] = (time.monotonic(), figures)
        return figures


# ---- equity curve ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EquityBucket:
    """The snapshots of one time bucket: how many; the first, lowest, highest and last equity."""

    start: dt.datetime
    end: dt.datetime
    count: int
    low: Decimal
    high: Decimal
    first: Decimal
    last: Decimal


# Seconds since the session's first snapshot, per backend. `{p}` is the placeholder.
_SECONDS_SINCE = {
    True: 'EXTRACT(EPOCH FROM ("timestamp" - {p}::timestamptz))',
    False: '((julianday("timestamp") - julianday({p})) * 86400.0)',
}
# One aggregate over the session's snapshots (index (session_id, timestamp)), grouped into at
# most {p}(buckets) buckets; the last equity of a bucket is looked up by its last timestamp
# (and the first by its first: a few hundred index probes) rather than sorted for inside the aggregate.
_EQUITY_SQL = """
SELECT b.bucket, b.n, b.low, b.high, b.first_ts, b.last_ts,
       (SELECT h.equity FROM account_history AS h
        WHERE h.session_id = {p} AND h."timestamp" = b.first_ts
        ORDER BY h.id LIMIT 1) AS first_equity,
       (SELECT h.equity FROM account_history AS h
        WHERE h.session_id = {p} AND h."timestamp" = b.last_ts
        ORDER BY h.id DESC LIMIT 1) AS last_equity
FROM (
    SELECT LEAST_FN(CAST(FLOOR(SECONDS / {p}) AS INTEGER), {p}) AS bucket,
           COUNT(*) AS n, MIN(equity) AS low, MAX(equity) AS high,
           MIN("timestamp") AS first_ts, MAX("timestamp") AS last_ts
    FROM account_history
    WHERE session_id = {p}
    GROUP BY 1
) AS b
ORDER BY b.bucket
"""


# PostgreSQL, long sessions: bucket i spans [first + i·width, first + (i+1)·width), the last
# one open-ended; each is summarised from its first and last {p}(h) snapshots.
_SAMPLED_EQUITY_SQL = """
SELECT g.i, s.n, s.low, s.high, s.first_ts, s.last_ts, s.first_eq, s.last_eq
FROM generate_series(0, {p}) AS g(i)
CROSS JOIN LATERAL (
    SELECT {p}::timestamptz + g.i * w.seconds * INTERVAL '1 second' AS lo,
           CASE WHEN g.i = {p} THEN 'infinity'::timestamptz
                ELSE {p}::timestamptz + (g.i + 1) * w.seconds * INTERVAL '1 second' END AS hi
    FROM (SELECT CAST({p} AS double precision) AS seconds) AS w
) AS b
CROSS JOIN LATERAL (
    SELECT COUNT(*) AS n, MIN(e.equity) AS low, MAX(e.equity) AS high,
           MIN(e.ts) AS first_ts, MAX(e.ts) AS last_ts,
           (ARRAY_AGG(e.equity ORDER BY e.ts, e.id))[1] AS first_eq,
           (ARRAY_AGG(e.equity ORDER BY e.ts DESC, e.id DESC))[1] AS last_eq
    FROM (
        (SELECT "timestamp" AS ts, id, equity FROM account_history
         WHERE session_id = {p} AND "timestamp" >= b.lo AND "timestamp" < b.hi
         ORDER BY "timestamp" LIMIT {p})
        UNION
        (SELECT "timestamp" AS ts, id, equity FROM account_history
         WHERE session_id = {p} AND "timestamp" >= b.lo AND "timestamp" < b.hi
         ORDER BY "timestamp" DESC LIMIT {p})
    ) AS e
) AS s
WHERE s.n > 0
ORDER BY g.i
"""


def _equity_sql(postgres: bool, placeholder: str) -> str:
    seconds = _SECONDS_SINCE[postgres]
    least = "LEAST" if postgres else "MIN"  # SQLite's scalar MIN(a, b)
    sql = _EQUITY_SQL.replace("SECONDS", seconds).replace("LEAST_FN", least)
    return sql.replace("{p}", placeholder)


@dataclass(frozen=True)
class EquityCurve:
    """The downsampled curve, how many snapshots it summarises, and whether it is sampled."""

    buckets: list[EquityBucket]
    snapshots: int  # exact up to FULL_RESOLUTION_LIMIT, else FULL_RESOLUTION_LIMIT + 1
    sampled: bool

    @property
    def points(self) -> int:
        return len(self.buckets)


def _bucket(row: Sequence[Any]) -> EquityBucket:
    _index, n, low, high, first_ts, last_ts, first_eq, last_eq = row
    ts: Any = AccountHistory.timestamp
    money: Any = AccountHistory.equity
    return EquityBucket(
        start=ts.python_value(first_ts), end=ts.python_value(last_ts), count=int(n),
        low=money.python_value(low), high=money.python_value(high),
        first=money.python_value(first_eq), last=money.python_value(last_eq),
    )  # fmt: skip


def equity_curve(session_id: int, buckets: int = EQUITY_BUCKETS) -> EquityCurve:
    """The session's equity downsampled in SQL to at most `buckets` time buckets, oldest first.

    Up to FULL_RESOLUTION_LIMIT snapshots every snapshot counts (one aggregate); above it, on
    PostgreSQL, each bucket is summarised from its first and last SAMPLE_PER_BUCKET_END
    snapshots (two index range scans per bucket), so the cost stays bounded however long the
    session ran: first and last values stay exact, the band may miss a spike mid-bucket.
    """

    def work() -> EquityCurve:
        db = connection.bound_database()
        mine = AccountHistory.session == session_id
        span = (
            AccountHistory.select(
                pw.fn.MIN(AccountHistory.timestamp), pw.fn.MAX(AccountHistory.timestamp)
            )
            .where(mine)
            .tuples()
            .first()
        )
        if not span or span[0] is None:
            return EquityCurve([], 0, sampled=False)
        first = AccountHistory.timestamp.python_value(span[0])
        last = AccountHistory.timestamp.python_value(span[1])
        width = max((last - first).total_seconds() / buckets, 1e-6)
        start = AccountHistory.timestamp.db_value(first)
        postgres = connection.is_postgres(db)
        counted = (
            AccountHistory.select(AccountHistory.id)
            .where(mine)
            .limit(FULL_RESOLUTION_LIMIT + 1)
            .count()
        )
        sampled = postgres and counted > FULL_RESOLUTION_LIMIT
        if sampled:
            sql = _SAMPLED_EQUITY_SQL.replace("{p}", db.param)
            h = SAMPLE_PER_BUCKET_END
            params = [buckets - 1, start, buckets - 1, start, width, session_id, h, session_id, h]
        else:
            sql = _equity_sql(postgres, db.param)
            params = [session_id, session_id, start, width, buckets - 1, session_id]
        rows = db.execute_sql(sql, params).fetchall()
        return EquityCurve([_bucket(row) for row in rows], counted, sampled=sampled)

    return dashboard_read(work)


def drawdowns(curve: Sequence[EquityBucket]) -> list[Decimal]:
    """Percent below the running peak at each bucket's lowest point.

    The peak is the highest equity of the buckets before, or this bucket's first value if higher,
    so a high reached inside the bucket after its low never inflates the drawdown: the figure may
    understate a dip inside one bucket, never overstate one (exact when each bucket holds one
    snapshot).
    """
    out: list[Decimal] = []
    peak: Decimal | None = None
    for bucket in curve:
        reference = bucket.first if peak is None else max(peak, bucket.first)
        if reference > 0 and bucket.low < reference:
            out.append((reference - bucket.low) * 100 / reference)
        else:
            out.append(Decimal(0))
        peak = bucket.high if peak is None else max(peak, bucket.high)
    return out


def event_types() -> tuple[str, ...]:
    return EVENT_TYPES


def live_session_ids() -> list[int]:
    """Ids of sessions still marked active (for the header)."""
    return dashboard_read(
        lambda: [
            row.id
            for row in TradingSession.select(TradingSession.id)
            .where(TradingSession.is_active == True)  # noqa: E712 - peewee expression
            .limit(20)
        ]
    )
