"""Where the database is and how to talk to it: URL resolution, pool/session settings, redaction.

Pure functions of an environment mapping: nothing here connects, reads files or does DNS, so the
resolution rules can be unit-tested and explained (`DatabaseSettings.source`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .errors import ConfigurationError

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")
SUPPORTED_SCHEMES = (*POSTGRES_SCHEMES, "sqlite")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})
RAILWAY_PRIVATE_SUFFIX = ".railway.internal"
PRODUCTION_NAMES = frozenset({"production", "prod"})

# Both patterns are anchored on a literal and contain no nested or overlapping quantifiers, and
# every value is then consumed by one forward scan: redaction is linear in the input's length.
_NETLOC_END = re.compile(r"[/?#]")  # not newlines: urlsplit deletes them, so they hide nothing
_PASSWORD_KEY = re.compile(r"(?i)(?:^|(?<=[?&;\s]))password[ \t]*(=)[ \t]*")
_QUERY_VALUE_END = re.compile(r"[&#]")
_DSN_VALUE_END = re.compile(r"\s")
MASK = "***"


def _mask_netloc_passwords(text: str) -> str:
    """Mask `user:PASSWORD@` after each `://`, up to the *last* `@` of the netloc.

    urlsplit ends the netloc at the first `/`, `?` or `#` and splits userinfo at its last `@`, so
    a raw `@` or space in the password is masked whole. Each netloc is scanned once.
    """
    out: list[str] = []
    pos = 0
    start = text.find("://")
    while start != -1:
        begin = start + 3
        end_match = _NETLOC_END.search(text, begin)
        end = end_match.start() if end_match else len(text)
        at = text.rfind("@", begin, end)
        colon = text.find(":", begin, at) if at != -1 else -1
        if colon != -1:
            out.append(text[pos : colon + 1])
            out.append(MASK)
            pos = at
        start = text.find("://", max(begin, end - 1))  # "://" may start at the `/`
    out.append(text[pos:])
    return "".join(out)


def _quoted_end(text: str, start: int) -> int:
    """Index just past a libpq single-quoted value starting at `start` (backslash escapes)."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "'":
            return i + 1
        i += 1
    return n


def _mask_keyword_passwords(text: str) -> str:
    """Mask `?password=` / `&password=` query values and libpq `password=...` DSN values."""
    out: list[str] = []
    pos = 0
    for match in _PASSWORD_KEY.finditer(text):
        if match.start() < pos:
            continue  # inside a value already masked
        value = match.end()
        in_query = match.start() > 0 and text[match.start() - 1] in "?&"
        if in_query:  # query values keep leading blanks (parse_qsl does), so mask from the `=`
            value = match.end(1)
            end_match = _QUERY_VALUE_END.search(text, value)
            end = end_match.start() if end_match else len(text)
        elif value < len(text) and text[value] == "'":
            end = _quoted_end(text, value)
        else:
            end_match = _DSN_VALUE_END.search(text, value)
            end = end_match.start() if end_match else len(text)
        out.append(text[pos:value])
        out.append(MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact_url(url: str | None) -> str:
    """Mask the password of a URL or libpq DSN (netloc or `password=` parameter) for display.

    Errors and logs pass arbitrary text through here, so it masks generously (to the netloc's last
    `@`, to the end of a query value) and runs in linear time on any input.
    """
    if not url:
        return str(url)
    return _mask_keyword_passwords(_mask_netloc_passwords(str(url)))


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


def is_production(env: Mapping[str, str]) -> bool:
    """Railway deploys and ATB_ENV=production refuse to guess a database."""
    if env.get("ATB_ENV", "").strip().lower() in PRODUCTION_NAMES:
        return True
    return bool(env.get("RAILWAY_ENVIRONMENT_NAME") or env.get("RAILWAY_ENVIRONMENT"))


def inside_railway(env: Mapping[str, str]) -> bool:
    """True in a Railway deployment, where *.railway.internal resolves (not under `railway run`)."""
    forced = env.get("ATB_INSIDE_RAILWAY", "").strip().lower()
    if forced in {"1", "true", "yes"}:
        return True
    if forced in {"0", "false", "no"}:
        return False
    return bool(env.get("RAILWAY_REPLICA_ID") or env.get("RAILWAY_DEPLOYMENT_ID"))


@dataclass(frozen=True)
class ParsedUrl:
    """A database URL split into what psycopg2 needs; `password` never leaves through repr."""

    scheme: str
    host: str | None
    port: int | None
    user: str | None
    password: str | None = field(repr=False)
    database: str
    query: dict[str, str]

    def __repr__(self) -> str:
        # The libpq `?password=` parameter lands in `query`; mask it like the netloc password.
        query = {k: (MASK if k.lower() == "password" else v) for k, v in self.query.items()}
        return (
            f"ParsedUrl(scheme={self.scheme!r}, host={self.host!r}, port={self.port!r}, "
            f"user={self.user!r}, database={self.database!r}, query={query!r})"
        )

    @property
    def is_sqlite(self) -> bool:
        return self.scheme == "sqlite"

    @property
    def is_local(self) -> bool:
        """Loopback or a Unix socket: no TLS needed, destructive commands allowed."""
        return self.host is None or self.host in LOCAL_HOSTS or self.host.startswith("/")


def _port(raw: str, url: str) -> int:
    """One port number; libpq's port lists (several servers) are refused, not guessed."""
    text = str(raw).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigurationError(
            f"database URL {redact_url(url)} has an invalid port {text!r} "
            "(expected one number from 1 to 65535)"
        )
    return int(text)


def _check_text(url: str) -> None:
    """Refuse what libpq cannot take (NUL, bytes that are not UTF-8) before any driver sees it."""
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        shown = redact_url(url.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        raise ConfigurationError(f"database URL {shown!r} is not valid UTF-8") from None
    if "\x00" in url or "%00" in url:
        raise ConfigurationError(
            f"database URL {redact_url(url)!r} contains a NUL character (%00), "
            "which PostgreSQL does not allow"
        )


def parse_url(url: str) -> ParsedUrl:
    """Split a URL, refusing unknown schemes and malformed parts with a message naming the problem."""
    if not url or "://" not in url:
        raise ConfigurationError(
            f"database URL {redact_url(url)!r} is not a URL; expected e.g. "
            "postgresql://user:password@host:5432/dbname"
        )
    _check_text(url)
    try:
        parts = urlsplit(url)
        hostname, _ = parts.hostname, parts.username  # urlsplit validates these lazily
    except (
        ValueError
    ) as exc:  # e.g. "Invalid IPv6 URL" for a raw `[`; its text may quote the netloc
        why = (
            ": Invalid IPv6 URL (an unclosed [ in the host or password)"
            if "IPv6" in str(exc)
            else ""
        )
        raise ConfigurationError(f"database URL {redact_url(url)} is malformed{why}") from None
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ConfigurationError(
            f"unsupported database URL scheme {scheme!r} in {redact_url(url)}; "
            f"supported: {', '.join(s + '://' for s in POSTGRES_SCHEMES)} (and sqlite:// in unit tests)"
        )
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        database = path[1:] if path.startswith("/") else path
        return ParsedUrl("sqlite", None, None, None, None, database or ":memory:", {})
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    host = unquote(hostname) if hostname else None
    if "host" in query:  # libpq style: postgresql://user@/db?host=/socket/dir
        host = query.pop("host")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            f"database URL {redact_url(url)} has an invalid port "
            "(expected one number from 1 to 65535)"
        ) from None
    if "port" in query:
        port = _port(query.pop("port"), url)
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigurationError(
            f"database URL {redact_url(url)} names no database; add /dbname after the host"
        )
    return ParsedUrl(
        scheme="postgresql",
        host=host,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=database,
        query=query,
    )


def build_url(
    host: str | None,
    port: int | None,
    user: str | None,
    password: str | None,
    database: str,
    query: Mapping[str, str] | None = None,
) -> str:
    """Assemble a postgresql:// URL, with Unix-socket hosts in the query as libpq expects."""
    query = dict(query or {})
    netloc = ""
    if user:
        netloc = quote(user, safe="")
        if password:
            netloc += ":" + quote(password, safe="")
        netloc += "@"
    if host and host.startswith("/"):
        query = {"host": host, **({"port": str(port)} if port else {}), **query}
    elif host:
        netloc += f"[{host}]" if ":" in host else host
        if port:
            netloc += f":{port}"
    return urlunsplit(("postgresql", netloc, "/" + quote(database, safe=""), urlencode(query), ""))


@dataclass(frozen=True)
class DatabaseSettings:
    """Everything `connect()` needs. `source` says which rule chose the URL (shown by the CLI)."""

    url: str | None = field(repr=False)  # None: the local embedded server, resolved at connect time
    source: str = "argument"
    pool_size: int = 10
    pool_max_age: int = 1800
    pool_timeout: int = 10
    connect_timeout: int = 5
    statement_timeout_ms: int = 10_000
    lock_timeout_ms: int = 10_000
    idle_in_transaction_timeout_ms: int = 60_000
    application_name: str = "atb"
    sslmode: str | None = None
    keepalives_idle: int = 30
    call_timeout_s: int = 15
    retry_s: int = 5
    allow_sqlite: bool = False
    production: bool = False
    replica_url: str | None = field(default=None, repr=False)  # DATABASE_REPLICA_URL
    replica_max_lag_s: int = 30

    def __repr__(self) -> str:
        return f"DatabaseSettings(url={self.redacted_url!r}, source={self.source!r})"

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url) if self.url else "local embedded PostgreSQL"

    @property
    def uses_local_server(self) -> bool:
        return self.url is None

    def with_url(self, url: str, source: str) -> DatabaseSettings:
        return replace(self, url=url, source=source)

    def same_target(self, other: DatabaseSettings) -> bool:
        """The same database URL (and read replica), whatever the source or pool settings."""
        return (self.url, self.replica_url) == (other.url, other.replica_url)

    @property
    def redacted_replica_url(self) -> str | None:
        return redact_url(self.replica_url) if self.replica_url else None

    def replica_settings(self) -> DatabaseSettings:
        """The settings of the read replica's own pool: this one's limits, the replica's URL."""
        if not self.replica_url:
            raise ConfigurationError("no read replica configured (DATABASE_REPLICA_URL)")
        return replace(self, url=self.replica_url, source="DATABASE_REPLICA_URL", replica_url=None)

    def parsed(self) -> ParsedUrl:
        if self.url is None:
            raise ConfigurationError("the local server URL is resolved at connect time")
        return parse_url(self.url)

    def connect_params(self) -> dict:
        """psycopg2 keyword arguments: credentials plus timeouts, keepalives, TLS, application name."""
        parsed = self.parsed()
        params: dict = {
            "database": parsed.database,
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
        }
        for key in ("host", "port", "user", "password"):
            value = getattr(parsed, key)
            if value is not None:
                params[key] = value
        if not (parsed.host or "").startswith("/"):
            params.update(
                keepalives=1,
                keepalives_idle=self.keepalives_idle,
                keepalives_interval=10,
                keepalives_count=3,
                # The kernel gives up on unacknowledged data after the call bound (Linux).
                tcp_user_timeout=self.call_timeout_s * 1000,
            )
        sslmode = parsed.query.get("sslmode") or self.sslmode
        if sslmode is None and not parsed.is_local:
            sslmode = "require"
        if sslmode:
            params["sslmode"] = sslmode
        # Anything else the URL carries (sslrootcert, target_session_attrs, options, ...) wins.
        params.update({k: v for k, v in parsed.query.items() if k != "sslmode"})
        return params

    def transaction_settings_sql(self) -> str:
        """`SET LOCAL` for the timeouts, sent in the same query string as each BEGIN.

        Not a startup `options` parameter (PgBouncer refuses it) and not session `SET` (it would
        stay on a pooled server connection): transaction-local, so nothing outlives the transaction.
        """
        return "".join(
            f"SET LOCAL {name} = {int(value)}; "
            for name, value in (
                ("statement_timeout", self.statement_timeout_ms),
                ("lock_timeout", self.lock_timeout_ms),
                ("idle_in_transaction_session_timeout", self.idle_in_transaction_timeout_ms),
            )
        )

    @classmethod
    def from_env(
        cls,
        url: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        allow_sqlite: bool = False,
    ) -> DatabaseSettings:
        """Resolve the URL (explicit > DATABASE_URL > DATABASE_PUBLIC_URL > PG* > local) and settings."""
        env = os.environ if env is None else env
        production = is_production(env)
        resolved, source = _resolve_url(url, env, production)
        settings = cls(
            url=resolved,
            source=source,
            pool_size=_env_int(env, "ATB_DB_POOL_SIZE", 10, minimum=1),
            pool_max_age=_env_int(env, "ATB_DB_POOL_MAX_AGE", 1800),
            pool_timeout=_env_int(env, "ATB_DB_POOL_TIMEOUT", 10, minimum=1),
            connect_timeout=_env_int(env, "ATB_DB_CONNECT_TIMEOUT", 5, minimum=1),
            statement_timeout_ms=_env_int(env, "ATB_DB_STATEMENT_TIMEOUT_MS", 10_000),
            lock_timeout_ms=_env_int(env, "ATB_DB_LOCK_TIMEOUT_MS", 10_000),
            idle_in_transaction_timeout_ms=_env_int(env, "ATB_DB_IDLE_IN_TX_TIMEOUT_MS", 60_000),
            application_name=env.get("ATB_DB_APPLICATION_NAME", "atb") or "atb",
            sslmode=env.get("ATB_DB_SSLMODE") or None,
            keepalives_idle=_env_int(env, "ATB_DB_KEEPALIVES_IDLE", 30, minimum=1),
            call_timeout_s=_env_int(env, "ATB_DB_CALL_TIMEOUT_S", 15, minimum=1),
            retry_s=_env_int(env, "ATB_DB_RETRY_S", 5),
            allow_sqlite=allow_sqlite,
            production=production,
            replica_url=_replica_url(env, resolved),
            replica_max_lag_s=_env_int(env, "ATB_DB_REPLICA_MAX_LAG_S", 30, minimum=1),
        )
        if resolved is not None:
            parsed = parse_url(resolved)
            if parsed.is_sqlite and not allow_sqlite:
                raise ConfigurationError(
                    f"SQLite ({redact_url(resolved)}) is for unit tests only; "
                    "set DATABASE_URL to a postgresql:// URL"
                )
        return settings


def _replica_url(env: Mapping[str, str], primary: str | None) -> str | None:
    """DATABASE_REPLICA_URL when set: a postgresql:// URL of a streaming replica of the primary."""
    raw = env.get("DATABASE_REPLICA_URL", "").strip()
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(
            f"DATABASE_REPLICA_URL={redact_url(raw)} is not a postgresql:// URL "
            "(a read replica of the primary; unset it to read from the primary only)"
        )
    if primary is not None and parse_url(primary).is_sqlite:
        raise ConfigurationError("DATABASE_REPLICA_URL needs a PostgreSQL primary, not SQLite")
    parse_url(raw)  # a malformed URL fails here, with the URL redacted
    return raw


def _pg_port(raw: str | None) -> int | None:
    if not raw:
        return None
    text = raw.strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigurationError(f"PGPORT={raw!r} is not a port number (1 to 65535)")
    return int(text)


def _url_from_pg_env(env: Mapping[str, str]) -> str | None:
    if not (env.get("PGHOST") or env.get("PGDATABASE")):
        return None
    return build_url(
        host=env.get("PGHOST") or "localhost",
        port=_pg_port(env.get("PGPORT")),
        user=env.get("PGUSER"),
        password=env.get("PGPASSWORD"),
        database=env.get("PGDATABASE") or env.get("PGUSER") or "postgres",
    )


def _resolve_url(
    url: str | None, env: Mapping[str, str], production: bool
) -> tuple[str | None, str]:
    if url:
        return url, "argument"
    private = env.get("DATABASE_URL", "").strip()
    public = env.get("DATABASE_PUBLIC_URL", "").strip()
    if private:
        host = parse_url(private).host or "" if "://" in private else ""
        if host.endswith(RAILWAY_PRIVATE_SUFFIX) and not inside_railway(env):
            if public:
                return public, "DATABASE_PUBLIC_URL (DATABASE_URL is Railway-private)"
            raise ConfigurationError(
                f"DATABASE_URL points at Railway's private network ({host}), which is reachable "
                "only inside Railway; set DATABASE_PUBLIC_URL to the database's public URL"
            )
        return private, "DATABASE_URL"
    if public:
        return public, "DATABASE_PUBLIC_URL"
    from_pg = _url_from_pg_env(env)
    if from_pg:
        return from_pg, "PG* variables"
    if production:
        raise ConfigurationError(
            "no database configured in production: set DATABASE_URL "
            "(Railway: reference the PostgreSQL service's DATABASE_URL variable)"
        )
    return None, "local embedded PostgreSQL"
