"""Collected only when named on the command line (no `test_` file prefix): run by
test_adopt_pg.py's `test_the_manager_suites_pass_on_an_adopted_database` with
ATB_TEST_ADOPTED_DATABASE=1, to prove the manager suites really ran on an adopted database."""

from atb.db.admin.adopt import ADOPTED_COMMENT
from atb.testing import execute_sql


def test_pg_database_url_is_an_adopted_database(pg_database_url: str) -> None:
    assert execute_sql(pg_database_url, "SELECT obj_description('alembic_version'::regclass)") == [
        (ADOPTED_COMMENT,)
    ]
