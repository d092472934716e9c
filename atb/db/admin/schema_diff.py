"""Models versus migration files, without a database: `atb db check` and `atb db makemigrations`.

The migrations' idea of the schema is rebuilt by replaying every migration file in peewee-migrate's
fake mode against a throw-away in-memory SQLite database (nothing is executed, only the models
each migration declares are tracked). The difference to the models is computed by peewee-migrate's
generator with atb's fixes (`atb.db.codegen.atb_codegen`), so what `check` prints is exactly what
`makemigrations` would write.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import peewee as pw
from peewee_migrate import Router, auto
from peewee_migrate.migrator import Migrator

from atb.db import codegen, migrate
from atb.db.errors import MigrationError, ValidationError

__all__ = [
    "MIGRATION_NAME",
    "SchemaDiff",
    "diff_models",
    "make_migration",
    "migrations_state",
    "next_migration_number",
]

MIGRATION_NAME = re.compile(r"^[a-z0-9_]+$")
_NUMBERED = re.compile(r"^(\d{3})_")
log = logging.getLogger("atb.db.schema_diff")


@dataclass(frozen=True)
class SchemaDiff:
    """What the models change relative to the migrations, as migration source lines."""

    migrate_ops: tuple[str, ...]
    rollback_ops: tuple[str, ...]
    migrations: tuple[str, ...]  # the migration files replayed

    @property
    def has_changes(self) -> bool:
        return bool(self.migrate_ops)

    def migrate_code(self) -> str:
        return codegen.operations_to_code(self.migrate_ops)

    def rollback_code(self) -> str:
        return codegen.operations_to_code(self.rollback_ops)


def _default_models() -> list[type[pw.Model]]:
    from atb.db.models import ALL_MODELS

    return list(ALL_MODELS)


def migrations_state(directory: Path | None = None) -> tuple[Migrator, tuple[str, ...]]:
    """Replay every migration file (fake mode, in-memory SQLite): the migrator holding their models."""
    directory = Path(directory) if directory is not None else migrate.migrations_dir()
    names = migrate.available_migrations(directory)
    scratch = pw.SqliteDatabase(":memory:")
    router = Router(scratch, migrate_dir=directory, logger=log)
    migrator = Migrator(scratch)
    quiet = log.disabled
    log.disabled = True  # run_one logs a traceback before re-raising; ours is one clear line
    try:
        for name in names:
            try:
                router.run_one(name, migrator, fake=True)
            except Exception as exc:
                raise MigrationError(
                    f"cannot read migration {name} ({directory}): {type(exc).__name__}: {exc}"
                ) from exc
    finally:
        log.disabled = quiet
        scratch.close()
    return migrator, names


def diff_models(
    models: Sequence[type[pw.Model]] | None = None, directory: Path | None = None
) -> SchemaDiff:
    """The operations a new migration needs so the migrations match `models` (default: atb's)."""
    models = list(models) if models is not None else _default_models()
    migrator, names = migrations_state(directory)
    source = list(migrator.orm)
    with codegen.atb_codegen():
        forward = auto.diff_many(models, source, migrator)
    with codegen.atb_codegen(strict_additions=False):
        backward = auto.diff_many(source, models, migrator, reverse=True)
    return SchemaDiff(tuple(forward), tuple(backward), names)


def next_migration_number(directory: Path) -> int:
    """One more than the highest `NNN_` prefix in the folder (gaps are not refilled)."""
    numbers = [
        int(match.group(1))
        for path in directory.glob("*.py")
        if (match := _NUMBERED.match(path.name))
    ]
    return max(numbers, default=0) + 1


def make_migration(
    name: str,
    *,
    models: Sequence[type[pw.Model]] | None = None,
    directory: Path | None = None,
    empty: bool = False,
) -> Path:
    """Write `NNN_<name>.py` for the model changes (or an empty one); MigrationError if none."""
    if not MIGRATION_NAME.match(name or ""):
        raise ValidationError(
            "name", f"{name!r} is not a valid migration name: use a-z, 0-9 and _ only"
        )
    directory = Path(directory) if directory is not None else migrate.migrations_dir()
    if not directory.is_dir():
        raise MigrationError(f"migration folder {directory} does not exist")
    if empty:
        migrate_code = rollback_code = ""
    else:
        diff = diff_models(models, directory)
        if not diff.has_changes:
            raise MigrationError(
                "no changes: the models match the migrations (use --empty for a hand-written one)"
            )
        migrate_code, rollback_code = diff.migrate_code(), diff.rollback_code()
    title = f"{name.replace('_', ' ').capitalize()} ({dt.date.today().isoformat()})."
    source = codegen.render_migration(title, migrate_code, rollback_code)
    try:
        compile(source, f"{name}.py", "exec")
    except SyntaxError as exc:  # a generator bug: never write a file that cannot load
        raise MigrationError(f"generated migration does not compile: {exc}") from exc
    number = next_migration_number(directory)
    path = directory / f"{number:03d}_{name}.py"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise MigrationError(f"{path} exists already") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(source)
    return path
