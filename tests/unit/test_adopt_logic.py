"""`atb db adopt`'s pure pieces: --map parsing, the legacy spellings it maps on its own, and the
guard on SQLite (no server needed)."""

from __future__ import annotations

import pytest
from helpers import atb_db

from atb.db.admin.adopt import (
    ForeignSchemaError,
    _known_spelling,
    detect_foreign_schema,
    parse_mappings,
)
from atb.db.errors import ValidationError
from atb.db.manager import DatabaseManager

ORDER_STATUSES = frozenset({"PENDING", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "FAILED"})


def test_mappings_parse_per_column() -> None:
    assert parse_mappings(
        ["orders.status:PENDING_SUBMIT=PENDING", "orders.status:new=OPEN", "trades.side:B=LONG"]
    ) == {
        ("orders", "status"): {"PENDING_SUBMIT": "PENDING", "new": "OPEN"},
        ("trades", "side"): {"B": "LONG"},
    }


@pytest.mark.parametrize(
    "spec", ["orders.status", "orders:OLD=NEW", "status:OLD=NEW", "orders.status:OLD=", "x"]
)
def test_malformed_mappings_name_the_expected_form(spec: str) -> None:
    with pytest.raises(ValidationError, match="TABLE.COLUMN:OLD=NEW"):
        parse_mappings([spec])


def test_a_value_mapped_twice_differently_is_refused() -> None:
    with pytest.raises(ValidationError, match="mapped twice"):
        parse_mappings(["orders.status:X=OPEN", "orders.status:X=FAILED"])


@pytest.mark.parametrize(
    ("table", "column", "value", "expected"),
    [
        ("orders", "status", "filled", "FILLED"),
        ("orders", "status", "EXPIRED", "CANCELLED"),
        ("orders", "status", "canceled", "CANCELLED"),
        ("orders", "status", "REJECTED", "FAILED"),
        ("orders", "status", "PENDING_SUBMIT", None),
        ("trades", "side", "buy", "LONG"),
        ("trades", "side", " short ", "SHORT"),
        ("partial_trades", "operation_type", "partial_exit", "PARTIAL_EXIT"),
    ],
)
def test_known_spellings(table, column, value, expected) -> None:
    allowed = (
        ORDER_STATUSES
        if column == "status"
        else frozenset({"LONG", "SHORT", "PARTIAL_EXIT", "SCALE_IN"})
    )
    assert _known_spelling(table, column, value, allowed) == expected


def test_the_guard_on_sqlite(sqlite_db) -> None:
    assert detect_foreign_schema(sqlite_db) is None  # atb's own schema
    sqlite_db.execute_sql("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    sqlite_db.execute_sql("DELETE FROM migratehistory")
    found = detect_foreign_schema(sqlite_db)
    assert found is not None and found.has_alembic and found.history_rows == 0
    with pytest.raises(ForeignSchemaError, match="atb db adopt"):
        DatabaseManager(database=sqlite_db)


def test_a_malformed_map_is_a_usage_error() -> None:
    result = atb_db("adopt", "--plan", "--map", "nonsense")
    assert result.exit_code == 2
    assert "TABLE.COLUMN:OLD=NEW" in result.output
