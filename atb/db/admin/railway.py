"""Railway: the pre-deploy set-up (`atb db setup-railway`) and the guarded data reset (`reset-railway`).

URL choice is `DatabaseSettings.from_env`'s: the private `*.railway.internal` URL inside a Railway
deployment, `DATABASE_PUBLIC_URL` (TLS required) from a laptop with Railway's variables
(`railway run ...`). A reset only proceeds when this shell's Railway environment is the one named,
after a backup, and after the caller's confirmation.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import peewee as pw

from atb.db import connection, migrate
from atb.db.connection import translated_errors
from atb.db.errors import ConfigurationError
from atb.db.settings import DatabaseSettings, inside_railway

from . import Refused, check_server_is_local, refuse_redirections, refuse_unless_local
from .backup import DEFAULT_TIMEOUT, BackupResult, Progress, backup_database
from .verify import VerifyReport, verify_database

__all__ = [
    "ENVIRONMENT_VARIABLES",
    "ResetResult",
    "SetupResult",
    "check_environment",
    "guard_reset_target",
    "railway_environment",
    "reset_environment",
    "resolve_railway_settings",
    "setup_railway",
    "truncate_app_tables",
]

ENVIRONMENT_VARIABLES = ("RAILWAY_ENVIRONMENT_NAME", "RAILWAY_ENVIRONMENT")


def railway_environment(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(environment name, the variable it came from), or (None, None) outside Railway's variables."""
    for variable in ENVIRONMENT_VARIABLES:
        value = (env.get(variable) or "").strip()
        if value:
            return value, variable
    return None, None


def check_environment(expected: str, env: Mapping[str, str]) -> str:
    """Refuse unless this shell's Railway environment is `expected` (case-insensitive)."""
    found, variable = railway_environment(env)
    if found is None:
        raise Refused(
            f"this shell has no Railway environment (neither {' nor '.join(ENVIRONMENT_VARIABLES)} "
            f"is set), so its database cannot be confirmed to be {expected!r}'s; run it through "
            f"Railway: railway run -e {expected} atb db reset-railway {expected}"
        )
    if found.lower() != expected.strip().lower():
        raise Refused(
            f"the database here belongs to Railway environment {found!r} ({variable}), "
            f"not {expected!r}; nothing was changed"
        )
    return found


def resolve_railway_settings(env: Mapping[str, str], url: str | None = None) -> DatabaseSettings:
    """Settings for Railway's database; a clear error when no Railway URL is available."""
    settings = DatabaseSettings.from_env(url, env=env)
    if settings.uses_local_server:
        raise ConfigurationError(
            "no Railway database configured: DATABASE_URL and DATABASE_PUBLIC_URL are unset. "
            "Inside Railway give the service DATABASE_URL=${{Postgres.DATABASE_URL}}; "
            "on a laptop run: railway run atb db setup-railway"
        )
    return settings


@dataclass
class SetupResult:
    database: str  # redacted
    source: str
    sslmode: str | None
    inside_railway: bool
    environment: str | None
    applied: list[str]
    report: VerifyReport
    next_steps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok


def _next_steps(inside: bool, report: VerifyReport) -> list[str]:
    steps: list[str] = []
    if not report.ok:
        steps.append("fix the problems listed above (`atb db verify` shows them) before deploying")
    if inside:
        steps.append("the schema is at head; this deploy may start")
        return steps
    steps += [
        "in Railway: app service > Settings > Deploy > Pre-deploy Command: atb db setup-railway "
        "(migrations then run before every deploy, under a lock)",
        "give the app service DATABASE_URL=${{Postgres.DATABASE_URL}} (the private URL; "
        "no egress fees)",
        "back up before risky changes: railway run atb db backup --output backups/prod.dump",
    ]
    return steps


def setup_railway(env: Mapping[str, str], url: str | None = None) -> SetupResult:
    """Resolve Railway's URL, bind it, apply migrations under the lock, verify, suggest next steps."""
    settings = resolve_railway_settings(env, url)
    db = connection.connect(settings=settings, replace=True)
    applied = migrate.apply_pending_migrations(db=db)
    report = verify_database(db)
    inside = inside_railway(env)
    params = settings.connect_params()
    return SetupResult(
        database=settings.redacted_url,
        source=settings.source,
        sslmode=params.get("sslmode"),
        inside_railway=inside,
        environment=railway_environment(env)[0],
        applied=applied,
        report=report,
        next_steps=_next_steps(inside, report),
    )


@dataclass(frozen=True)
class ResetResult:
    environment: str
    database: str  # redacted
    backup: BackupResult
    truncated: list[str]


def truncate_app_tables(
    db: pw.Database, models: Sequence[type[pw.Model]] | None = None
) -> list[str]:
    """Empty every app table in one statement (ids restart); the migration history stays."""
    if models is None:
        from atb.db.models import ALL_MODELS

        models = ALL_MODELS
    tables = [model._meta.table_name for model in models]
    if migrate.HISTORY_TABLE in tables:
        raise ConfigurationError("refusing to truncate the migration history")
    with translated_errors(), db.connection_context():
        present = set(db.get_tables())
        tables = [table for table in tables if table in present]
        if tables:
            quoted = ", ".join(f'"{table}"' for table in tables)
            with db.atomic():
                db.execute_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
    return tables


def default_backup_path(backup_dir: Path, environment: str, now: dt.datetime | None = None) -> Path:
    """`<dir>/<env>-<UTC timestamp>.dump` (with `-2`, `-3`, ... if that name is taken)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", environment.strip()) or "railway"
    path = Path(backup_dir) / f"{slug}-{stamp}.dump"
    number = 1
    while path.exists():  # two resets within one second keep both backups
        number += 1
        path = Path(backup_dir) / f"{slug}-{stamp}-{number}.dump"
    return path


def guard_reset_target(
    db: pw.Database,
    settings: DatabaseSettings,
    env: Mapping[str, str],
    *,
    explicit_url: bool,
    allow_production: bool,
) -> None:
    """Judge the database the reset will really reach, not only the Railway environment's name.

    Nothing may redirect libpq (hostaddr, host lists, service, PGHOSTADDR, ...). An explicit URL
    is not the environment's own, so it gets `nuke`'s guard: local (and the server confirms it)
    or `--allow-production`. The Railway variables check_environment needs do not count here.
    """
    url = settings.url or ""
    refuse_redirections(url, env, allow_production=allow_production, action="reset")
    if not explicit_url:
        return
    outside = {k: v for k, v in env.items() if k not in ENVIRONMENT_VARIABLES}
    if refuse_unless_local(url, outside, allow_production=allow_production, action="reset"):
        check_server_is_local(db, url, action="reset")


def reset_environment(
    db: pw.Database,
    settings: DatabaseSettings,
    environment: str,
    *,
    env: Mapping[str, str],
    backup_dir: Path | str = Path("backups"),
    confirm: Callable[[BackupResult], bool],
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
    explicit_url: bool = False,
    allow_production: bool = False,
) -> ResetResult:
    """Check the environment and the target, back up, ask `confirm`, then TRUNCATE the app tables."""
    found = check_environment(environment, env)
    guard_reset_target(
        db, settings, env, explicit_url=explicit_url, allow_production=allow_production
    )
    target = default_backup_path(Path(backup_dir), environment)
    backup = backup_database(settings, target, db=db, timeout=timeout, progress=progress)
    if not confirm(backup):
        raise Refused(
            f"reset of {found!r} cancelled; nothing was deleted (backup kept at {backup.path})"
        )
    truncated = truncate_app_tables(db)
    return ResetResult(
        environment=found,
        database=settings.redacted_url,
        backup=backup,
        truncated=truncated,
    )
