"""Drop every object of the current schema and rebuild it through the migrations (`atb db nuke`).

Not `DROP SCHEMA public CASCADE`: on managed PostgreSQL the application role often does not own
`public`. Instead every table, view, sequence, type and routine in the schema (except what an
extension owns) is dropped by name, in one transaction, and the migrations then run from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import peewee as pw

from atb.db import migrate
from atb.db.connection import is_postgres, translated_errors
from atb.db.errors import ConfigurationError

from . import check_server_is_local, refuse_unless_local

__all__ = ["KINDS", "NukeResult", "nuke_database", "schema_objects"]

# Drop order: dependants first; CASCADE and IF EXISTS cover whatever went with an earlier drop.
KINDS = (
    "view",
    "materialized view",
    "table",
    "sequence",
    "function",
    "procedure",
    "aggregate",
    "type",
)

_NOT_FROM_EXTENSION = """NOT EXISTS (
    SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"""

_RELATIONS_SQL = f"""
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'S' THEN 'sequence' ELSE 'table' END,
       format('%%I.%%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
  AND {_NOT_FROM_EXTENSION.format(oid="c.oid")}
ORDER BY 2
"""

_ROUTINES_SQL = f"""
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = current_schema() AND {_NOT_FROM_EXTENSION.format(oid="p.oid")}
ORDER BY 2
"""

# Stand-alone types only: enums, domains, ranges, composite types that are not a table's row type.
_TYPES_SQL = f"""
SELECT 'type', format('%%I.%%I', n.nspname, t.typname)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = current_schema()
  AND (t.typtype IN ('e', 'd', 'r', 'm')
       OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
  AND {_NOT_FROM_EXTENSION.format(oid="t.oid")}
ORDER BY 2
"""

_DROP = {
    "view": "DROP VIEW IF EXISTS {} CASCADE",
    "materialized view": "DROP MATERIALIZED VIEW IF EXISTS {} CASCADE",
    "table": "DROP TABLE IF EXISTS {} CASCADE",
    "sequence": "DROP SEQUENCE IF EXISTS {} CASCADE",
    "function": "DROP FUNCTION IF EXISTS {} CASCADE",
    "procedure": "DROP PROCEDURE IF EXISTS {} CASCADE",
    "aggregate": "DROP AGGREGATE IF EXISTS {} CASCADE",
    "type": "DROP TYPE IF EXISTS {} CASCADE",
}


@dataclass(frozen=True)
class NukeResult:
    database: str
    dropped: dict[str, int]
    applied: list[str]


def schema_objects(db: pw.Database) -> dict[str, list[str]]:
    """Every droppable object of the current schema, by kind (what `nuke` would drop)."""
    if not is_postgres(db):
        raise ConfigurationError("atb db nuke supports PostgreSQL only")
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    with translated_errors(), db.connection_context():
        for sql in (_RELATIONS_SQL, _ROUTINES_SQL, _TYPES_SQL):
            for kind, name in db.execute_sql(sql).fetchall():
                found[kind].append(name)
    return found


def nuke_database(
    db: pw.Database,
    url: str,
    *,
    env: Mapping[str, str],
    allow_production: bool = False,
) -> NukeResult:
    """Drop everything in the schema (one transaction), then apply every migration from scratch."""
    if refuse_unless_local(url, env, allow_production=allow_production, action="nuke"):
        check_server_is_local(db, url, action="nuke")
    objects = schema_objects(db)
    with translated_errors(), db.connection_context():
        (name,) = db.execute_sql("SELECT current_database()").fetchone()
        with db.atomic():
            db.execute_sql("SET LOCAL statement_timeout = 0")
            for kind in KINDS:
                for qualified in objects[kind]:
                    db.execute_sql(_DROP[kind].format(qualified))
    applied = migrate.apply_pending_migrations(db=db)
    return NukeResult(
        database=str(name),
        dropped={kind: len(names) for kind, names in objects.items() if names},
        applied=applied,
    )
