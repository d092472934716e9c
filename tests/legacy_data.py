"""A database as the earlier SQLAlchemy layer left it: its schema (tests/fixtures/legacy_schema.sql)
and realistic rows in every table (NULLs, legacy enum spellings, naive UTC timestamps, float
balances such as 0.1 + 0.2), generated server-side so even a million trades load fast.

`load_legacy(url)` builds it (10,619 rows by default); `snapshot(url)` and `fingerprint(url)`
are what the adopt tests compare before and after.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from atb.testing import execute_sql

LEGACY_SCHEMA = Path(__file__).parent / "fixtures" / "legacy_schema.sql"

# Row counts of the default fixture per table; 10,618 rows plus the alembic_version stamp.
DEFAULT_ROWS = {
    "trading_sessions": 40,
    "market_sessions": 4,
    "correlation_matrix": 30,
    "portfolio_exposures": 12,
    "prediction_cache": 400,
    "prediction_performance": 60,
    "strategy_registry": 12,
    "positions": 1500,
    "account_history": 900,
    "account_balances": 300,
    "performance_metrics": 120,
    "system_events": 800,
    "optimization_cycles": 40,
    "dynamic_performance_metrics": 60,
    "risk_adjustments": 50,
    "strategy_versions": 12,
    "strategy_performance": 24,
    "strategy_lineage": 4,
    "orders": 2500,
    "partial_trades": 400,
    "trades": 3000,
    "strategy_executions": 350,
}

T0 = "TIMESTAMP '2025-03-01 00:00:00'"


def _fill_sql(n: dict[str, int]) -> list[str]:
    s, p, t = n["trading_sessions"], n["positions"], n["trades"]
    r = n["strategy_registry"]
    return [
        f"""INSERT INTO trading_sessions (session_name, start_time, end_time, is_active, mode,
            initial_balance, final_balance, strategy_name, strategy_config, symbol, timeframe,
            exchange, time_exit_config, market_timezone, total_pnl, total_trades, win_rate,
            max_drawdown, created_at, updated_at)
        SELECT CASE WHEN i % 5 = 0 THEN NULL ELSE 'session ' || i END,
               {T0} + i * interval '1 day',
               CASE WHEN i % 3 = 0 THEN NULL ELSE {T0} + i * interval '1 day' + interval '7 hours' END,
               CASE WHEN i % 4 = 0 THEN NULL ELSE i % 2 = 0 END,
               (ARRAY['LIVE', 'BACKTEST', 'PAPER', 'paper'])[1 + i % 4],
               10000 + i * 0.12345678, CASE WHEN i % 2 = 0 THEN NULL ELSE 10500.5 END,
               'ml_basic', CASE WHEN i % 3 = 0 THEN NULL
                                ELSE jsonb_build_object('risk', 0.02, 'n', i) END,
               'BTCUSDT', '1h', CASE WHEN i % 6 = 0 THEN NULL ELSE 'binance' END,
               CASE WHEN i % 2 = 0 THEN 'null'::jsonb ELSE '{{"max_hours": 24}}'::jsonb END,
               CASE WHEN i % 2 = 0 THEN NULL ELSE 'UTC' END,
               i * -1.5, i, 0.55, 0.1, {T0} + i * interval '1 day', NULL
        FROM generate_series(1, {s}) i""",
        """INSERT INTO market_sessions (name, timezone, open_time, close_time, days_of_week, is_24h)
        VALUES ('crypto', 'UTC', NULL, NULL, '[0,1,2,3,4,5,6]', true),
               ('nyse', 'America/New_York', '09:30', '16:00', '[1,2,3,4,5]', false),
               (NULL, NULL, NULL, NULL, NULL, NULL),
               ('lse', 'Europe/London', '08:00', '16:30', '[1,2,3,4,5]', NULL)""",
        f"""INSERT INTO correlation_matrix (symbol_pair, correlation_value, p_value, sample_size,
            last_updated, window_days)
        SELECT CASE WHEN i % 7 = 0 THEN NULL ELSE 'BTCUSDT-ETHUSDT' END, 0.87654321, NULL, 500,
               CASE WHEN i % 4 = 0 THEN NULL ELSE {T0} + i * interval '1 hour' END, 30
        FROM generate_series(1, {n["correlation_matrix"]}) i""",
        f"""INSERT INTO portfolio_exposures (correlation_group, total_exposure, position_count,
            symbols, last_updated)
        SELECT 'group ' || i, 0.25, i, '["BTCUSDT", "ETHUSDT"]'::jsonb,
               CASE WHEN i % 3 = 0 THEN NULL ELSE {T0} + i * interval '5 minutes' END
        FROM generate_series(1, {n["portfolio_exposures"]}) i""",
        f"""INSERT INTO prediction_cache (cache_key, model_name, features_hash, predicted_price,
            confidence, direction, created_at, expires_at, access_count, last_accessed,
            config_hash)
        SELECT 'key-' || i, 'lstm', md5(i::text), 64000 + i, 0.75, (i % 3) - 1,
               {T0} + i * interval '1 minute', {T0} + i * interval '1 minute' + interval '1 hour',
               CASE WHEN i % 5 = 0 THEN NULL ELSE i END,
               CASE WHEN i % 2 = 0 THEN NULL ELSE {T0} + i * interval '2 minutes' END,
               md5('cfg' || (i % 4))
        FROM generate_series(1, {n["prediction_cache"]}) i""",
        f"""INSERT INTO prediction_performance (timestamp, model_name, horizon, mae, rmse, mape, ic,
            mean_pred, std_pred, mean_real, std_real, strategy_name, symbol, timeframe, created_at)
        SELECT {T0} + i * interval '1 hour', 'lstm', CASE WHEN i % 4 = 0 THEN NULL ELSE 1 END,
               0.01, 0.02, NULL, 0.1, 1, 2, 3, 4, 'ml_basic', 'BTCUSDT', '1h', NULL
        FROM generate_series(1, {n["prediction_performance"]}) i""",
        f"""INSERT INTO strategy_registry (strategy_id, name, version, parent_id, lineage_path,
            branch_name, merge_source, created_at, created_by, description, tags, status,
            signal_generator_config, risk_manager_config, position_sizer_config,
            regime_detector_config, parameters, performance_summary, validation_results,
            config_hash, component_hash, created_at_db, updated_at)
        SELECT 'strat-' || i, 'Strategy ' || (i % 5), 'v' || i,
               CASE WHEN i = 1 THEN NULL ELSE 'strat-' || (i - 1) END, '[]'::jsonb, NULL, NULL,
               {T0} + i * interval '1 day', 'tester', NULL, '["x"]'::jsonb,
               (ARRAY['EXPERIMENTAL', 'TESTING', 'PRODUCTION', 'retired', 'DEPRECATED'])[1 + i % 5],
               '{{}}'::jsonb, '{{}}'::jsonb, '{{}}'::jsonb, '{{}}'::jsonb, '{{"a": 1}}'::jsonb,
               NULL, 'null'::jsonb, md5('c' || i), md5('k' || i),
               {T0} + i * interval '1 day', NULL
        FROM generate_series(1, {r}) i""",
        f"""INSERT INTO positions (symbol, side, status, entry_price, size, quantity, original_size,
            current_size, partial_exits_taken, scale_ins_taken, last_partial_exit_price,
            last_scale_in_price, stop_loss, take_profit, trailing_stop, trailing_stop_activated,
            trailing_stop_price, breakeven_triggered, entry_time, last_update, current_price,
            unrealized_pnl, unrealized_pnl_percent, mfe, mae, mfe_price, mae_price, mfe_time,
            mae_time, strategy_name, confidence_score, exchange, session_id, created_at,
            updated_at, max_holding_until, end_of_day_exit, weekend_exit, time_restriction_group)
        SELECT (ARRAY['BTCUSDT', 'ETHUSDT', 'SOLUSDT'])[1 + i % 3],
               (ARRAY['LONG', 'SHORT', 'long', 'short'])[1 + i % 4],
               (ARRAY['OPEN', 'CLOSED', 'CLOSED', 'closed'])[1 + i % 4],
               60000 + i * 0.00000001, 0.1, CASE WHEN i % 3 = 0 THEN NULL ELSE 0.005 END,
               0.1, 0.1, CASE WHEN i % 2 = 0 THEN NULL ELSE 0 END, 0, NULL, NULL,
               58000, 66000, CASE WHEN i % 3 = 0 THEN NULL ELSE false END, false, NULL, NULL,
               {T0} + i * interval '37 minutes',
               CASE WHEN i % 2 = 0 THEN NULL ELSE {T0} + i * interval '37 minutes' END,
               61000, 12.5, 0.02, 0.03, -0.01, NULL, NULL,
               CASE WHEN i % 2 = 0 THEN NULL ELSE {T0} + i * interval '38 minutes' END, NULL,
               'ml_basic', 0.7, 'binance', CASE WHEN i % 10 = 0 THEN NULL ELSE 1 + i % {s} END,
               {T0} + i * interval '37 minutes', NULL,
               CASE WHEN i % 5 = 0 THEN {T0} + i * interval '37 minutes' + interval '1 day' END,
               NULL, false, NULL
        FROM generate_series(1, {p}) i""",
        f"""INSERT INTO account_history (timestamp, balance, equity, margin_used, margin_available,
            total_pnl, daily_pnl, drawdown, open_positions, total_exposure, session_id, created_at)
        SELECT {T0} + i * interval '1 hour', 10000 + i, 10010 + i, NULL, 5000, 12.34567891,
               -1, 0.05, i % 3, 0.3, CASE WHEN i % 9 = 0 THEN NULL ELSE 1 + i % {s} END, NULL
        FROM generate_series(1, {n["account_history"]}) i""",
        f"""INSERT INTO account_balances (base_currency, total_balance, available_balance,
            reserved_balance, asset_balances, last_updated, updated_by, update_reason, session_id,
            created_at)
        SELECT 'USD',
               CASE i % 5 WHEN 0 THEN 0.1::float8 + 0.2::float8 WHEN 1 THEN 1e-9::float8
                          WHEN 2 THEN 12345.678901234567::float8 WHEN 3 THEN -0.30000000000000004
                          ELSE 9999999999.99999::float8 END,
               (10000 + i)::float8 / 3, CASE WHEN i % 4 = 0 THEN NULL ELSE 0.1::float8 * 3 END,
               CASE WHEN i % 2 = 0 THEN '{{}}'::jsonb ELSE '{{"BTC": 0.1, "USD": 1000}}'::jsonb END,
               {T0} + i * interval '3 hours', 'system', 'trade_pnl',
               CASE WHEN i % 6 = 0 THEN NULL ELSE 1 + i % {s} END,
               CASE WHEN i % 2 = 0 THEN NULL ELSE {T0} + i * interval '3 hours' END
        FROM generate_series(1, {n["account_balances"]}) i""",
        f"""INSERT INTO performance_metrics (period, period_start, period_end, total_trades,
            winning_trades, losing_trades, win_rate, total_return, total_return_percent,
            max_drawdown, max_drawdown_duration, sharpe_ratio, sortino_ratio, calmar_ratio, avg_win,
            avg_loss, profit_factor, expectancy, best_trade_pnl, worst_trade_pnl,
            largest_win_streak, largest_loss_streak, strategy_breakdown, session_id, created_at,
            updated_at)
        SELECT 'daily', {T0} + i * interval '1 day', {T0} + (i + 1) * interval '1 day', 10, 6, 4,
               0.6, 100, 1, 0.1, NULL, 1.5, NULL, NULL, 10, -5, 1.2, 0.5, 30, -20, 3, 2,
               '{{"ml_basic": {{"pnl": 1.5}}}}'::jsonb,
               CASE WHEN i % 2 = 0 THEN NULL ELSE 1 + i % {s} END, NULL, NULL
        FROM generate_series(1, {n["performance_metrics"]}) i""",
        f"""INSERT INTO system_events (timestamp, event_type, severity, message, details, component,
            error_code, stack_trace, alert_sent, alert_method, session_id, created_at)
        SELECT {T0} + i * interval '13 minutes',
               (ARRAY['ENGINE_START', 'ENGINE_STOP', 'ERROR', 'warning', 'BALANCE_ADJUSTMENT',
                      'TEST'])[1 + i % 6],
               CASE WHEN i % 3 = 0 THEN NULL ELSE 'info' END, 'event ' || i || E' \\u00e9',
               CASE WHEN i % 2 = 0 THEN NULL ELSE jsonb_build_object('i', i) END,
               'engine', NULL, NULL, NULL, NULL,
               CASE WHEN i % 4 = 0 THEN NULL ELSE 1 + i % {s} END, NULL
        FROM generate_series(1, {n["system_events"]}) i""",
        f"""INSERT INTO optimization_cycles (timestamp, strategy_name, symbol, timeframe,
            baseline_metrics, candidate_params, candidate_metrics, validator_report, decision,
            session_id, created_at, updated_at)
        SELECT {T0} + i * interval '6 hours', 'ml_basic', 'BTCUSDT', '1h', '{{"sharpe": 1}}',
               NULL, NULL, NULL, 'propose', CASE WHEN i % 2 = 0 THEN NULL ELSE 1 + i % {s} END,
               NULL, NULL
        FROM generate_series(1, {n["optimization_cycles"]}) i""",
        f"""INSERT INTO dynamic_performance_metrics (timestamp, rolling_win_rate,
            rolling_sharpe_ratio, current_drawdown, volatility_30d, consecutive_losses,
            consecutive_wins, risk_adjustment_factor, profit_factor, expectancy,
            avg_trade_duration_hours, session_id, created_at)
        SELECT {T0} + i * interval '1 hour', 0.5, 1.1, 0.02, 0.3, 1, 0, NULL, NULL, NULL, 4.5,
               1 + i % {s}, NULL
        FROM generate_series(1, {n["dynamic_performance_metrics"]}) i""",
        f"""INSERT INTO risk_adjustments (timestamp, adjustment_type, trigger_reason,
            parameter_name, original_value, adjusted_value, adjustment_factor, current_drawdown,
            performance_score, volatility_level, duration_minutes, trades_during_adjustment,
            pnl_during_adjustment, session_id, created_at)
        SELECT {T0} + i * interval '2 hours', 'drawdown', NULL, 'position_size_factor', 1, 0.5,
               0.5, 0.1, NULL, NULL, 60, NULL, NULL, 1 + i % {s}, NULL
        FROM generate_series(1, {n["risk_adjustments"]}) i""",
        f"""INSERT INTO strategy_versions (strategy_id, version, created_at, changes,
            performance_delta, is_major, component_changes, parameter_changes, created_at_db)
        SELECT 'strat-' || (1 + i % {r}), 'v' || i, {T0} + i * interval '1 day', '["init"]',
               NULL, CASE WHEN i % 2 = 0 THEN NULL ELSE true END, NULL, NULL, NULL
        FROM generate_series(1, {n["strategy_versions"]}) i""",
        f"""INSERT INTO strategy_performance (strategy_id, version, period_start, period_end,
            period_type, total_return, total_return_pct, sharpe_ratio, max_drawdown, win_rate,
            total_trades, winning_trades, losing_trades, avg_trade_duration_hours, volatility,
            sortino_ratio, calmar_ratio, var_95, signal_generator_contribution,
            risk_manager_contribution, position_sizer_contribution, regime_performance,
            additional_metrics, test_symbol, test_timeframe, test_parameters, created_at,
            updated_at)
        SELECT 'strat-' || (1 + i % {r}), 'v1', {T0} + i * interval '1 day',
               {T0} + (i + 30) * interval '1 day', 'backtest', 100, 1, 1.2, 0.1, 0.5, 10, 5, 5,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{{}}'::jsonb, 'BTCUSDT',
               '1h', NULL, NULL, NULL
        FROM generate_series(1, {n["strategy_performance"]}) i""",
        f"""INSERT INTO strategy_lineage (ancestor_id, descendant_id, relationship_type,
            generation_distance, created_at, evolution_reason, change_impact,
            performance_improvement, risk_change, created_at_db)
        SELECT 'strat-1', 'strat-' || (i + 1), 'parent', i, {T0} + i * interval '1 day', NULL,
               NULL, 0.1, NULL, NULL
        FROM generate_series(1, {n["strategy_lineage"]}) i""",
        f"""INSERT INTO orders (position_id, order_type, status, exchange_order_id,
            internal_order_id, symbol, side, quantity, price, filled_quantity, filled_price,
            commission, created_at, filled_at, cancelled_at, last_update, strategy_name,
            session_id, target_level, size_fraction)
        SELECT 1 + i % {p}, (ARRAY['ENTRY', 'PARTIAL_EXIT', 'SCALE_IN', 'FULL_EXIT'])[1 + i % 4],
               (ARRAY['PENDING', 'OPEN', 'FILLED', 'CANCELLED', 'FAILED', 'filled',
                      'EXPIRED'])[1 + i % 7],
               CASE WHEN i % 3 = 0 THEN NULL ELSE 'ex-' || i END, 'int-' || i, 'BTCUSDT',
               (ARRAY['LONG', 'SHORT', 'long'])[1 + i % 3], 0.5, NULL, 0.25, 64000.12345678,
               0.001, {T0} + i * interval '11 minutes',
               CASE WHEN i % 2 = 0 THEN NULL ELSE {T0} + i * interval '11 minutes' END, NULL,
               NULL, 'ml_basic', CASE WHEN i % 5 = 0 THEN NULL ELSE 1 + i % {s} END, NULL, 0.5
        FROM generate_series(1, {n["orders"]}) i""",
        f"""INSERT INTO partial_trades (position_id, operation_type, size, price, pnl, target_level,
            timestamp)
        SELECT 1 + i % {p}, (ARRAY['PARTIAL_EXIT', 'SCALE_IN', 'partial_exit', 'scale_in'])[1 + i % 4],
               0.25, 65000, CASE WHEN i % 2 = 0 THEN NULL ELSE 12.5 END, 1,
               CASE WHEN i % 3 = 0 THEN NULL ELSE {T0} + i * interval '17 minutes' END
        FROM generate_series(1, {n["partial_trades"]}) i""",
        f"""INSERT INTO trades (symbol, side, source, entry_price, exit_price, size, quantity,
            entry_time, exit_time, pnl, pnl_percent, commission, stop_loss, take_profit,
            exit_reason, strategy_name, strategy_config, confidence_score, order_id, exchange,
            timeframe, mfe, mae, mfe_price, mae_price, mfe_time, mae_time, position_id,
            session_id, created_at, updated_at)
        SELECT (ARRAY['BTCUSDT', 'ETHUSDT'])[1 + i % 2], (ARRAY['LONG', 'SHORT', 'short'])[1 + i % 3],
               (ARRAY['LIVE', 'BACKTEST', 'PAPER', 'backtest'])[1 + i % 4],
               60000 + (i % 1000) * 1.23456789, 61000.5, 0.1, CASE WHEN i % 4 = 0 THEN NULL ELSE 0.01 END,
               {T0} + i * interval '7 minutes', {T0} + i * interval '7 minutes' + interval '3 hours',
               (i % 200) - 100.12345678, 0.0123, NULL, 59000, 66000,
               CASE WHEN i % 2 = 0 THEN NULL ELSE 'take_profit' END, 'ml_basic',
               CASE WHEN i % 3 = 0 THEN NULL ELSE '{{"a": [1, 2.50]}}'::jsonb END, NULL,
               CASE WHEN i % 2 = 0 THEN NULL ELSE 'ord-' || i END, 'binance', '1h', 0.01, -0.02,
               NULL, NULL, CASE WHEN i % 5 = 0 THEN {T0} + i * interval '8 minutes' END, NULL,
               CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + i % {p} END,
               CASE WHEN i % 7 = 0 THEN NULL ELSE 1 + i % {s} END,
               {T0} + i * interval '7 minutes', NULL
        FROM generate_series(1, {t}) i""",
        f"""INSERT INTO strategy_executions (timestamp, strategy_name, symbol, timeframe,
            signal_type, signal_strength, confidence_score, indicators, sentiment_data,
            ml_predictions, action_taken, position_size, reasons, price, volume, volatility,
            session_id, trade_id, created_at)
        SELECT {T0} + i * interval '5 minutes', 'ml_basic', 'BTCUSDT', NULL, 'entry', 0.8, 0.7,
               '{{"rsi": 55.5}}', NULL, NULL, 'opened_long', 0.1, '["signal"]', 64000, NULL, NULL,
               CASE WHEN i % 2 = 0 THEN NULL ELSE 1 + i % {s} END,
               CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + i % {t} END, NULL
        FROM generate_series(1, {n["strategy_executions"]}) i""",
        "ANALYZE",
    ]


def load_legacy(url: str, *, trades: int | None = None, rows: dict[str, int] | None = None) -> None:
    """Build the earlier layer's schema in the (empty) database at `url` and fill every table."""
    counts = {**DEFAULT_ROWS, **(rows or {})}
    if trades is not None:
        counts["trades"] = trades
    execute_sql(url, LEGACY_SCHEMA.read_text(encoding="utf-8"), *_fill_sql(counts))


def table_names(url: str) -> list[str]:
    rows = execute_sql(
        url,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
    )
    return [row[0] for row in rows]


def fingerprint(url: str) -> dict[str, str]:
    """Every table's rows (hashed) and the whole schema's catalog: equal means unchanged."""
    result: dict[str, str] = {}
    for table in table_names(url):
        (digest, count) = execute_sql(
            url,
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')), count(*) "
            f'FROM "{table}" t',
        )[0]
        result[table] = f"{count}:{digest}"
    catalog = execute_sql(
        url,
        """SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
             SELECT 'col ' || c.relname || '.' || a.attname || ' ' ||
                    format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' ||
                    coalesce(pg_get_expr(d.adbin, d.adrelid), '-') AS line
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
           UNION ALL
             SELECT 'con ' || c.relname || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
           UNION ALL
             SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
           UNION ALL
             SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' ' ||
                    coalesce(obj_description(c.oid, 'pg_class'), '-')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public'
           UNION ALL
             SELECT 'nsp ' || nspname FROM pg_namespace
           UNION ALL
             SELECT 'seq ' || sequencename || ' ' || coalesce(last_value, 0)
             FROM pg_sequences WHERE schemaname = 'public'
         ) lines""",
    )[0][0]
    result["<catalog>"] = hashlib.sha256(catalog.encode()).hexdigest()
    return result


# Legacy spellings adopt rewrites on its own (lower case, validate.py's aliases).
KNOWN_SPELLINGS = {
    "paper": "PAPER",
    "backtest": "BACKTEST",
    "long": "LONG",
    "short": "SHORT",
    "closed": "CLOSED",
    "retired": "RETIRED",
    "warning": "WARNING",
    "filled": "FILLED",
    "EXPIRED": "CANCELLED",
    "partial_exit": "PARTIAL_EXIT",
    "scale_in": "SCALE_IN",
}


def snapshot(url: str) -> dict[str, dict[int, tuple]]:
    """Every row of every table, by id, each value as adopt must leave it: timestamps as UTC
    instants, floats as PostgreSQL casts them to numeric(18,8); read in a New York session so a
    TimeZone-dependent conversion would show."""
    result: dict[str, dict[int, tuple]] = {}
    columns = execute_sql(
        url,
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped "
        # metric_rollups: derived data a later migration adds (empty until a metrics read)
        "AND c.relname NOT IN ('migratehistory', 'alembic_version', 'metric_rollups') "
        "ORDER BY c.relname, a.attnum",
    )
    by_table: dict[str, list[tuple[str, str]]] = {}
    for table, column, pg_type in columns:
        by_table.setdefault(table, []).append((column, pg_type))
    for table, cols in by_table.items():
        select = []
        names = []
        for column, pg_type in cols:
            if column in ("average_fill_price", "request_id"):
                continue  # columns adopt adds (NULL everywhere)
            names.append(column)
            if pg_type == "timestamp without time zone":
                select.append(f"\"{column}\" AT TIME ZONE 'UTC'")
            elif pg_type == "double precision":
                select.append(f'"{column}"::numeric(18,8)')
            elif pg_type in ("json", "jsonb"):
                select.append(f'"{column}"::jsonb::text')
            else:
                select.append(f'"{column}"')
        rows = execute_sql(
            url,
            "SET TimeZone = 'America/New_York'",
            f'SELECT {", ".join(select)} FROM "{table}" ORDER BY id',
        )
        index = names.index("id")
        result[table] = {
            row[index]: tuple(
                KNOWN_SPELLINGS.get(value, value) if isinstance(value, str) else value
                for value in row
            )
            for row in rows
        }
    return result
