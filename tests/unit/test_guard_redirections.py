"""The guard's reading of libpq: which URL parameters and variables could redirect a connection,
and what the client tools inherit. No database needed."""

from __future__ import annotations

import pytest

from atb.db.admin import Refused, is_local_database, redirections, refuse_unless_local
from atb.db.pgtools import tool_connection
from atb.db.settings import DatabaseSettings


def test_redirections_name_each_libpq_parameter() -> None:
    assert redirections("postgresql://u@localhost/db", {}) == []
    assert redirections("postgresql://u@/db?host=/run/pg&port=5432", {"PGHOST": "x"}) == []
    assert redirections("postgresql://u@localhost/db?hostaddr=10.0.0.1", {}) == [
        "hostaddr= in the URL"
    ]
    assert redirections("postgresql://u@/db", {"PGPORT": "5433"}) == [
        "PGPORT is set and the URL names no port"
    ]


@pytest.mark.parametrize(
    ("url", "env"),
    [
        ("postgresql://u@localhost/db?hostaddr=10.0.0.1", {}),
        ("postgresql://u@/db?host=/run/pg,db.example.com", {}),
        ("postgresql://u@/db?service=prod", {}),
        ("postgresql://u@localhost:5432/db", {"PGHOSTADDR": "10.0.0.1"}),
        ("postgresql://u@localhost:5432/db", {"PGSERVICE": "prod"}),
        ("postgresql://u@localhost:5432/db", {"PGSERVICEFILE": "/tmp/x"}),
        ("postgresql://u@/db?port=5432", {"PGHOST": "db.example.com"}),
    ],
)
def test_a_redirectable_url_is_not_local_and_is_refused(url: str, env: dict[str, str]) -> None:
    assert is_local_database(url, env) is False
    with pytest.raises(Refused, match="libpq may connect elsewhere"):
        refuse_unless_local(url, env, allow_production=False, action="nuke")
    assert refuse_unless_local(url, env, allow_production=True, action="nuke") is False


def test_tools_get_only_the_checked_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHOSTADDR", "PGSERVICE", "PGHOST", "PGPORT", "PGPASSWORD"):
        monkeypatch.setenv(name, "stray")
    conninfo, env = tool_connection(
        DatabaseSettings(url="postgresql://u:pw@/db?host=/run/pg&port=5432")
    )
    assert not any(name.startswith("PG") and name != "PGPASSWORD" for name in env)
    assert env["PGPASSWORD"] == "pw"
    assert "host='/run/pg'" in conninfo and "pw" not in conninfo
