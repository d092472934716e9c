"""URL resolution, settings from the environment, redaction: pure logic, no database."""

import pytest

from atb.db.errors import ConfigurationError
from atb.db.settings import DatabaseSettings, build_url, parse_url, redact_url

PRIVATE = "postgresql://app:privpw@postgres.railway.internal:5432/railway"
PUBLIC = "postgresql://app:pubpw@roundhouse.proxy.rlwy.net:41234/railway"


def resolve(env, url=None, **kw):
    return DatabaseSettings.from_env(url, env=env, **kw)


def test_explicit_url_wins_over_every_variable():
    s = resolve({"DATABASE_URL": "postgresql://a@h/x"}, "postgresql://b@h/y")
    assert (s.url, s.source) == ("postgresql://b@h/y", "argument")


def test_database_url_is_used_when_given():
    s = resolve({"DATABASE_URL": "postgresql://a@h/x", "DATABASE_PUBLIC_URL": PUBLIC})
    assert s.url == "postgresql://a@h/x"


def test_railway_private_url_outside_railway_falls_back_to_public_url():
    s = resolve({"DATABASE_URL": PRIVATE, "DATABASE_PUBLIC_URL": PUBLIC})
    assert s.url == PUBLIC
    assert "DATABASE_PUBLIC_URL" in s.source


def test_railway_private_url_inside_railway_is_kept():
    env = {"DATABASE_URL": PRIVATE, "DATABASE_PUBLIC_URL": PUBLIC, "RAILWAY_DEPLOYMENT_ID": "d1"}
    assert resolve(env).url == PRIVATE


def test_railway_private_url_outside_railway_without_public_url_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="DATABASE_PUBLIC_URL") as err:
        resolve({"DATABASE_URL": PRIVATE})
    assert "privpw" not in str(err.value)


def test_pg_variables_build_a_url():
    env = {
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "u",
        "PGPASSWORD": "p w",
        "PGDATABASE": "d",
    }
    parsed = parse_url(resolve(env).url)
    assert (parsed.host, parsed.port, parsed.user, parsed.password, parsed.database) == (
        "db.example",
        6543,
        "u",
        "p w",
        "d",
    )


def test_pghost_directory_means_unix_socket():
    s = resolve({"PGHOST": "/var/run/postgresql", "PGDATABASE": "d", "PGUSER": "u"})
    assert s.connect_params()["host"] == "/var/run/postgresql"
    assert "sslmode" not in s.connect_params()


def test_no_url_in_development_means_the_local_server():
    s = resolve({})
    assert s.uses_local_server and s.url is None


@pytest.mark.parametrize(
    "env",
    [
        {"ATB_ENV": "production"},
        {"RAILWAY_ENVIRONMENT_NAME": "production"},
        {"RAILWAY_ENVIRONMENT": "x"},
    ],
)
def test_no_url_in_production_is_a_configuration_error(env):
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        resolve(env)


@pytest.mark.parametrize(
    "url", ["postgres://u@h/d", "postgresql://u@h/d", "postgresql+psycopg2://u@h/d"]
)
def test_supported_postgres_schemes(url):
    assert parse_url(url).scheme == "postgresql"


def test_unsupported_scheme_names_the_supported_ones_and_hides_the_password():
    with pytest.raises(ConfigurationError) as err:
        resolve({}, "mysql://root:hunter2@h/d")
    message = str(err.value)
    assert "postgresql://" in message and "postgres://" in message
    assert "hunter2" not in message


def test_sqlite_is_refused_without_opt_in():
    with pytest.raises(ConfigurationError, match="unit tests"):
        resolve({}, "sqlite:///:memory:")


def test_sqlite_is_accepted_with_opt_in():
    assert resolve({}, "sqlite:///:memory:", allow_sqlite=True).parsed().is_sqlite


def test_url_without_database_name_is_refused():
    with pytest.raises(ConfigurationError, match="names no database"):
        parse_url("postgresql://u:pw@host:5432")


def test_remote_hosts_require_tls_unless_the_url_says_otherwise():
    assert resolve({}, "postgresql://u@db.example/d").connect_params()["sslmode"] == "require"
    assert (
        resolve({}, "postgresql://u@db.example/d?sslmode=disable").connect_params()["sslmode"]
        == "disable"
    )
    assert "sslmode" not in resolve({}, "postgresql://u@127.0.0.1/d").connect_params()


def test_session_timeouts_and_application_name_reach_the_connection():
    env = {"ATB_DB_STATEMENT_TIMEOUT_MS": "1234", "ATB_DB_APPLICATION_NAME": "engine"}
    settings = resolve(env, "postgresql://u@127.0.0.1/d")
    params = settings.connect_params()
    assert "SET LOCAL statement_timeout = 1234;" in settings.transaction_settings_sql()
    assert params["application_name"] == "engine"
    assert params["keepalives"] == 1
    assert params["tcp_user_timeout"] == 15_000


def test_no_startup_options_so_pgbouncer_accepts_the_connection():
    """PgBouncer refuses the `options` startup parameter; timeouts travel with each BEGIN."""
    assert "options" not in resolve({}, "postgresql://u@127.0.0.1/d").connect_params()


def test_call_timeout_defaults_to_fifteen_seconds_and_is_configurable():
    assert resolve({}, "postgresql://u@127.0.0.1/d").call_timeout_s == 15
    env = {"ATB_DB_CALL_TIMEOUT_S": "2"}
    assert resolve(env, "postgresql://u@127.0.0.1/d").call_timeout_s == 2


def test_bad_numeric_setting_names_the_variable():
    with pytest.raises(ConfigurationError, match="ATB_DB_POOL_SIZE"):
        resolve({"ATB_DB_POOL_SIZE": "many"}, "postgresql://u@h/d")


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://user:s3cret@host:5432/db", "s3cret"),
        ("postgres://user:p%40ss@host/db?sslmode=require", "p%40ss"),
        ("postgresql://user@host/db?password=qwerty&sslmode=require", "qwerty"),
        ("host=h dbname=d user=u password=topsecret", "topsecret"),
    ],
)
def test_redact_url_masks_every_password_form(url, secret):
    redacted = redact_url(url)
    assert secret not in redacted
    assert "***" in redacted


def test_redact_url_keeps_passwordless_urls_readable():
    assert redact_url("postgresql://u@h:5432/d") == "postgresql://u@h:5432/d"


def test_build_url_round_trips_through_parse_url():
    url = build_url("/tmp/sock dir", 5432, "postgres", None, "atb")
    parsed = parse_url(url)
    assert (parsed.host, parsed.port, parsed.database) == ("/tmp/sock dir", 5432, "atb")


def test_settings_repr_never_shows_the_password():
    s = resolve({}, "postgresql://u:leaky@h/d")
    assert "leaky" not in repr(s.parsed())
    assert "leaky" not in s.redacted_url


def test_settings_object_repr_is_redacted():
    s = resolve({}, "postgresql://u:leaky@h/d")
    assert "leaky" not in repr(s) and "leaky" not in str(s)
