"""The read-only lexer: one statement, literals and comments never mistaken for code."""

import pytest

from atb.db import DatabaseManager, ValidationError
from atb.db.manage.sqlscan import check_read_only, scan


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ';'",
        "SELECT 'a'';b'",
        "SELECT E'\\';' AS x",
        'SELECT 1 AS ";"',
        "SELECT $$;$$",
        "SELECT $tag$ ; $$ ; $tag$",
        "SELECT $é_1$ ; $é_1$",
        "SELECT $\U0001f600$ ; COMMIT ; $\U0001f600$",  # any non-ASCII character, astral ones too
        "SELECT 1 -- ; DROP TABLE x\n",
        "SELECT 1 /* ; /* nested ; */ ; */",
        "SELECT 1;",
        "  ;SELECT 1; ; ",
    ],
)
def test_one_statement_whatever_the_literals_contain(sql):
    assert len(scan(sql)) == 1
    assert check_read_only(sql) is False


@pytest.mark.parametrize(
    "sql", ["SELECT 1; SELECT 2", "SELECT 1; DROP TABLE x", "SELECT '' ; COMMIT", ""]
)
def test_anything_but_one_statement_is_refused(sql):
    with pytest.raises(ValidationError, match="exactly one statement"):
        check_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "COMMIT",
        "rollback",
        "END",
        "SET TRANSACTION READ WRITE",
        "set transaction_read_only = off",
        "RESET ALL",
        "PREPARE p AS SELECT 1",
        "BEGIN",
        "ATTACH DATABASE 'x.db' AS x",
        "/* c */ COMMIT",
    ],
)
def test_transaction_and_session_control_is_refused(sql):
    with pytest.raises(ValidationError, match="not allowed in read-only mode"):
        check_read_only(sql)


@pytest.mark.parametrize("sql", ["SELECT 'unterminated", "SELECT $$x", "SELECT /* x"])
def test_unterminated_literals_are_refused(sql):
    with pytest.raises(ValidationError):
        check_read_only(sql)


def test_session_changing_functions_are_flagged():
    assert check_read_only("SELECT set_config('search_path', 'x', false)") is True
    assert check_read_only("SELECT 'set_config'") is False


def test_sqlite_refuses_attach_in_read_only_mode(sqlite_db, tmp_path):
    manager = DatabaseManager(database=sqlite_db, apply_migrations=False)
    with pytest.raises(ValidationError, match="ATTACH"):
        manager.execute_query(f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS other")
    assert not (tmp_path / "x.db").exists()
