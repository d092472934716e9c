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

from collections.abc import Mapping

from atb.db.errors import ConfigurationError
from atb.db.settings import is_production, parse_url, redact_url

__all__ = ["Refused", "describe_target", "is_local_database", "refuse_unless_local"]


class Refused(ConfigurationError):
    """A guard stopped a destructive operation (remote or production database, wrong environment)."""


def is_local_database(url: str, env: Mapping[str, str]) -> bool:
    """Loopback or a Unix socket, and not a production environment (ATB_ENV / Railway variables)."""
    return parse_url(url).is_local and not is_production(env)


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
    reason = (
        "a production environment (ATB_ENV / RAILWAY_ENVIRONMENT_NAME is set)"
        if is_production(env)
        else "not on this machine"
    )
    raise Refused(
        f"refusing to {action} {describe_target(url)} ({redact_url(url)}): it is {reason}; "
        "pass --allow-production if you really mean it"
    )
