"""Operations on a whole database, as plain functions the `atb db` CLI and scripts share.

- `verify`: compare a live PostgreSQL schema with the models (types, nullability, CHECKs, indexes,
  foreign keys), pending migrations, row counts.
- `schema_diff`: models versus migration files (no database needed); writes new migrations.
- `backup`: `pg_dump` / `pg_restore` / `psql` discovery, atomic backups, all-or-nothing restores.
- `nuke`: drop every object of the schema and rebuild it through the migrations (local only).
- `railway`: Railway deploy set-up and the guarded per-environment data reset.

Nothing here prints, prompts or exits: functions return dataclasses and raise `atb.db.errors`
exceptions (`Refused` when a guard stopped a destructive operation). Import the submodules directly;
this package imports none of them, so `import atb.db.admin` stays cheap.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from atb.db.errors import ConfigurationError
from atb.db.settings import is_production, parse_url, redact_url

__all__ = [
    "Refused",
    "check_server_is_local",
    "describe_target",
    "is_local_database",
    "redirections",
    "refuse_redirections",
    "refuse_unless_local",
]


class Refused(ConfigurationError):
    """A guard stopped a destructive operation (remote or production database, wrong environment)."""


# libpq reads these besides the URL's host; any of them can send the connection elsewhere.
REDIRECTING_PARAMETERS = ("hostaddr", "service", "servicefile")
REDIRECTING_VARIABLES = ("PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR")


def redirections(url: str, env: Mapping[str, str]) -> list[str]:
    """Why libpq might reach another server than the URL's host says (empty: the host decides)."""
    parsed = parse_url(url)
    found = [f"{name}= in the URL" for name in REDIRECTING_PARAMETERS if name in parsed.query]
    if parsed.host and "," in parsed.host:
        found.append("several hosts in the URL")
    found += [f"{name} is set" for name in REDIRECTING_VARIABLES if env.get(name)]
    if parsed.host is None and env.get("PGHOST"):
        found.append("PGHOST is set and the URL names no host")
    if parsed.port is None and env.get("PGPORT"):
        found.append("PGPORT is set and the URL names no port")
    return found


def is_local_database(url: str, env: Mapping[str, str]) -> bool:
    """Loopback or a Unix socket, nothing that redirects libpq, and not a production environment."""
    return parse_url(url).is_local and not redirections(url, env) and not is_production(env)


def describe_target(url: str) -> str:
    """`dbname on host` for prompts and messages; never a password."""
    parsed = parse_url(url)
    where = parsed.host or "the default socket"
    if parsed.port and not (parsed.host or "").startswith("/"):
        where = f"{where}:{parsed.port}"
    return f"{parsed.database!r} on {where}"


def refuse_unless_local(
    url: str, env: Mapping[str, str], *, allow_production: bool, action: str
) -> bool:
    """Raise `Refused` for a remote/production database unless allowed; True when it is local."""
    if is_local_database(url, env):
        return True
    if allow_production:
        return False
    redirected = redirections(url, env)
    if is_production(env):
        reason = "it is a production environment (ATB_ENV / RAILWAY_ENVIRONMENT_NAME is set)"
    elif redirected:
        reason = f"libpq may connect elsewhere ({'; '.join(redirected)})"
    else:
        reason = "it is not on this machine"
    raise Refused(
        f"refusing to {action} {describe_target(url)} ({redact_url(url)}): {reason}; "
        "pass --allow-production if you really mean it"
    )


def refuse_redirections(
    url: str, env: Mapping[str, str], *, allow_production: bool, action: str
) -> None:
    """Raise `Refused` when libpq could reach another server than the URL names, unless allowed."""
    redirected = redirections(url, env)
    if redirected and not allow_production:
        raise Refused(
            f"refusing to {action} {describe_target(url)} ({redact_url(url)}): libpq may connect "
            f"elsewhere ({'; '.join(redirected)}); pass --allow-production if you really mean it"
        )


def check_server_is_local(db, url: str, *, action: str) -> None:
    """Ask the server itself: a Unix socket (NULL address) or a loopback address, else `Refused`.

    The URL can be judged local while the connection went elsewhere (a proxy, a DNS entry for
    localhost); the address the server accepted us on is the fact.
    """
    from atb.db.connection import translated_errors

    with translated_errors(), db.connection_context():
        (address,) = db.execute_sql("SELECT host(inet_server_addr())").fetchone()
    if address is None:
        return
    try:
        loopback = ipaddress.ip_address(str(address)).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Refused(
            f"refusing to {action} {describe_target(url)} ({redact_url(url)}): the server "
            f"answered from {address}, which is not this machine; "
            "pass --allow-production if you really mean it"
        )
