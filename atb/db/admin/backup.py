"""Backups and restores with the PostgreSQL client tools: pg_dump, pg_restore, psql.

- Tool choice (atb/db/pgtools.py): the lowest major version that is at least the server's (an
  older pg_dump refuses to dump a newer server).
- Secrets: the password reaches the child through PGPASSWORD, never argv; no shell is involved;
  every message is redacted.
- Backups are written to a hidden temporary file next to the target, checked readable
  (`pg_restore --list`, or a full gzip read for `.sql.gz`), made 0600 and only then renamed.
- Restores run in one transaction (`--single-transaction` plus exit-on-error), so a failed restore
  leaves the database exactly as it was.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import peewee as pw

from atb.db.connection import bound_database, translated_errors
from atb.db.errors import ConfigurationError, DatabaseError
from atb.db.pgtools import (
    PgTool,
    choose_tool,
    clean_env,
    find_tools,
    last_lines,
    missing_tool,
    select_tool,
    tool_connection,
)
from atb.db.settings import DatabaseSettings, redact_url

__all__ = [
    "BackupResult",
    "RestoreResult",
    "backup_database",
    "backup_format",
    "detect_archive_format",
    "restore_database",
    "server_version_num",
]

Progress = Callable[[int, int], None]  # (done, total), in bytes or entries; cheap, called often

DEFAULT_TIMEOUT = 3600.0
CUSTOM = "custom"
SQL_GZ = "sql.gz"
_DUMPED_BY_RE = re.compile(rb"-- Dumped by pg_dump version (\d+)")
_DUMP_COMPLETE = b"PostgreSQL database dump complete"
_CHUNK = 1 << 20


class Cancelled(BaseException):
    """Ctrl-C or SIGTERM asked the operation to stop; raised at the next point where stopping
    changes nothing (a signal's KeyboardInterrupt can be swallowed, e.g. during a fork)."""


_cancel_requests: list[int] = []


def request_cancel(signum: int) -> None:
    """Called from a signal handler: the running backup or restore stops before it commits."""
    _cancel_requests.append(signum)


def reset_cancel() -> None:
    _cancel_requests.clear()


def _stop_if_cancelled() -> None:
    if _cancel_requests:
        raise Cancelled(_cancel_requests[-1])


def server_version_num(db: pw.Database | None = None) -> tuple[int, str]:
    """(server_version_num, server_version) of the database, e.g. (180006, "18.6")."""
    db = db or bound_database()
    with translated_errors():
        opened_here = db.is_closed()
        if opened_here:
            db.connect()
        try:
            num, text = db.execute_sql(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')"
            ).fetchone()
        finally:
            if opened_here and not db.is_closed():
                db.close()
    return int(num), str(text)


# --------------------------------------------------------------------------------------------------
# Running the tools


@dataclass(frozen=True)
class _Outcome:
    returncode: int
    stderr: str


def _run(
    args: list[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    feed: Callable[[IO[bytes]], None] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> _Outcome:
    """Run a tool without a shell; stream stderr lines to `on_line`; kill it after `timeout`."""
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=dict(env),
            shell=False,
            close_fds=True,
            process_group=0,  # our Ctrl-C reaches it only through us, after we decided
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )
    except OSError as exc:
        raise ConfigurationError(f"cannot run {args[0]}: {exc}") from exc
    lines: list[str] = []
    feed_error: list[BaseException] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = redact_url(raw.decode("utf-8", "replace").rstrip())
            if line:
                lines.append(line)
                if on_line is not None:
                    on_line(line)

    def write_stdin() -> None:
        assert proc.stdin is not None and feed is not None
        try:
            feed(proc.stdin)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the tool exited early (an error); its stderr says why
        except BaseException as exc:  # the input failed a check: the tool must not see EOF
            feed_error.append(exc)
            _kill(proc)
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    threads = [threading.Thread(target=read_stderr, daemon=True)]
    if feed is not None:
        threads.append(threading.Thread(target=write_stdin, daemon=True))
    for thread in threads:
        thread.start()
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise DatabaseError(
            f"{Path(args[0]).name} did not finish within {timeout:.0f}s and was stopped "
            "(raise --timeout for a large database)"
        ) from None
    except BaseException:  # Ctrl-C, SIGTERM: the tool dies before it can commit anything
        _kill(proc)
        raise
    finally:
        for thread in threads:
            thread.join(timeout=10)
    if feed_error:
        raise feed_error[0]
    return _Outcome(returncode, "\n".join(lines))


def _die_with_parent(parent_pid: int) -> None:
    """In the child, before exec: be killed when atb dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the process group and our signal handlers still stop it
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _kill(proc: subprocess.Popen) -> None:
    """Kill the tool's whole process group and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(last_lines(text, lines)) or "(no output)"


# --------------------------------------------------------------------------------------------------
# Backup


@dataclass(frozen=True)
class BackupResult:
    path: Path
    format: str
    size_bytes: int
    duration_s: float
    tool: PgTool
    server_version: str
    entries: int  # objects listed in the archive (custom) or 0 for SQL


def backup_format(path: Path) -> str:
    """`sql.gz` for FILE.sql.gz, the custom format for anything else except a bare `.sql`."""
    name = path.name.lower()
    if name.endswith(".sql.gz"):
        return SQL_GZ
    if name.endswith(".sql"):
        raise ConfigurationError(
            f"{path}: plain SQL backups are written gzip-compressed; name the file *.sql.gz "
            "(or *.dump for the custom format)"
        )
    return CUSTOM


def _check_custom_archive(pg_restore: Path, path: Path, timeout: float) -> int:
    """The archive reads in full (`pg_restore --file=/dev/null` decodes every data block, where
    `--list` reads only the table of contents); returns the number of entries it lists."""
    listed = _run_check([str(pg_restore), "--list", str(path)], path, timeout)
    _run_check([str(pg_restore), "--file", os.devnull, str(path)], path, timeout)
    return sum(1 for line in listed.splitlines() if line and not line.startswith(";"))


def _run_check(args: list[str], path: Path, timeout: float) -> str:
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )
    except subprocess.TimeoutExpired:
        raise DatabaseError(f"reading the archive {path} timed out") from None
    if proc.returncode != 0:
        raise DatabaseError(f"the archive {path} is not readable: {_tail(proc.stderr)}")
    return proc.stdout


def checksum_path(path: Path) -> Path:
    """Where the backup's SHA-256 lives: `FILE.sha256`, in `sha256sum -c` format."""
    return path.with_name(path.name + ".sha256")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, *, required: bool) -> bool:
    """Compare the file with the checksum written at backup time; False when there is none.

    A custom archive cut at the end can still read in full, so only the checksum proves it whole.
    """
    sidecar = checksum_path(path)
    try:
        recorded = sidecar.read_text(encoding="ascii").split()[0].lower()
    except (FileNotFoundError, IndexError, UnicodeDecodeError):
        if required:
            raise ConfigurationError(
                f"{path.name} has no readable checksum file {sidecar.name} (atb db backup writes "
                "one), so its completeness cannot be proven; pass --no-checksum to restore it anyway"
            ) from None
        return False
    if file_sha256(path) != recorded:
        raise DatabaseError(
            f"{path.name} does not match its checksum in {sidecar.name}: it is truncated or "
            "changed; nothing was restored"
        )
    return True


def _remove_dead_partials(folder: Path, name: str) -> None:
    """Temporary files of backups whose process died (killed, power cut) are removed."""
    for partial in folder.glob(f".{name}.partial-*"):
        pid_text = partial.name.rsplit(".partial-", 1)[1].split("-")[0]
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            partial.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_sql_gz(path: Path) -> None:
    """Read the whole gzip stream (CRC checked) and look for pg_dump's completion marker."""
    head = b""
    tail = b""
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                if len(head) < 256:
                    head += chunk[:256]
                tail = (tail + chunk)[-4096:]
    except (OSError, EOFError) as exc:
        raise DatabaseError(f"the backup {path} is not a readable gzip file: {exc}") from exc
    if b"PostgreSQL database dump" not in head or _DUMP_COMPLETE not in tail:
        raise DatabaseError(f"the backup {path} is incomplete (no pg_dump completion marker)")


def _dump_meter(db: pw.Database, progress: Progress) -> Callable[[str], None]:
    """Turn pg_dump's `--verbose` lines into (bytes of tables dumped, bytes of all tables)."""
    with translated_errors():
        sizes = dict(
            db.execute_sql(
                "SELECT n.nspname || '.' || c.relname, pg_catalog.pg_total_relation_size(c.oid) "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN "
                "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'"
            ).fetchall()
        )
    total = max(1, sum(sizes.values()))
    done = 0
    progress(0, total)

    def on_line(line: str) -> None:
        nonlocal done
        match = re.search(r'dumping contents of table "([^"]+)"', line)
        if match:
            done = min(total, done + sizes.get(match.group(1), 0))
            progress(done, total)

    return on_line


def _restore_meter(tool: PgTool, path: Path, progress: Progress, timeout: float):
    """Turn pg_restore's `--verbose` lines into (table data entries restored, entries)."""
    listed = _run_check([str(tool.path), "--list", str(path)], path, timeout)
    total = max(1, sum(1 for line in listed.splitlines() if " TABLE DATA " in line))
    done = 0
    progress(0, total)

    def on_line(line: str) -> None:
        nonlocal done
        if "processing data for table" in line:
            done = min(total, done + 1)
            progress(done, total)

    return on_line


def _write_checksum(digest: str, output: Path) -> None:
    """`output.sha256` (atomically, 0600), naming the final file as `sha256sum -c` expects."""
    sidecar = checksum_path(output)
    tmp = sidecar.with_name(f".{sidecar.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as stream:
            stream.write(f"{digest}  {output.name}\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, sidecar)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def backup_database(
    settings: DatabaseSettings,
    output: Path | str,
    *,
    db: pw.Database | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    overwrite: bool = False,
    progress: Progress | None = None,
    tool_dirs: Iterable[Path] | None = None,
) -> BackupResult:
    """Dump the database to `output` (custom format, or gzip'd SQL for *.sql.gz), atomically, 0600."""
    output = Path(output).expanduser().absolute()
    fmt = backup_format(output)
    if output.exists() and not overwrite:
        raise ConfigurationError(f"{output} exists already; choose another name or pass --force")
    if output.is_dir():
        raise ConfigurationError(f"{output} is a folder; give a file name")
    version_num, version = server_version_num(db)
    major = version_num // 10000
    dirs = list(tool_dirs) if tool_dirs is not None else None
    pg_dump = select_tool("pg_dump", major, dirs, why=f"to dump this PostgreSQL {version} server")
    conninfo, env = tool_connection(settings)
    args = [str(pg_dump.path), "--dbname", conninfo, "--no-password"]
    if fmt == CUSTOM:
        args += ["--format=custom"]
    else:
        # Plain SQL that cleans up first and assigns no owners, so psql can replay it anywhere.
        args += ["--format=plain", "--clean", "--if-exists", "--no-owner", "--compress=6"]
    on_line = None
    if progress is not None:
        args.append("--verbose")
        on_line = _dump_meter(db or bound_database(), progress)

    output.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _remove_dead_partials(output.parent, output.name)
    _remove_dead_partials(output.parent, checksum_path(output).name)
    partial = output.parent / f".{output.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    started = time.monotonic()
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as sink:
            outcome = _run(args, env=env, timeout=timeout, stdout=sink, on_line=on_line)
            sink.flush()
            os.fsync(sink.fileno())
        if outcome.returncode != 0:
            raise DatabaseError(
                f"pg_dump {pg_dump.version} failed (exit {outcome.returncode}): {_tail(outcome.stderr)}"
            )
        entries = 0
        if fmt == CUSTOM:
            pg_restore = pg_dump.sibling("pg_restore")
            if not pg_restore.exists():
                pg_restore = select_tool("pg_restore", pg_dump.major, dirs).path
            entries = _check_custom_archive(pg_restore, partial, timeout)
        else:
            _check_sql_gz(partial)
        os.chmod(partial, 0o600)
        digest = file_sha256(partial)
        _stop_if_cancelled()
        os.replace(partial, output)
        _write_checksum(digest, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(output.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return BackupResult(
        path=output,
        format=fmt,
        size_bytes=output.stat().st_size,
        duration_s=time.monotonic() - started,
        tool=pg_dump,
        server_version=version,
        entries=entries,
    )


# --------------------------------------------------------------------------------------------------
# Restore


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    format: str
    duration_s: float
    tool: PgTool
    server_version: str


def detect_archive_format(path: Path) -> str:
    """`custom` (PGDMP magic) or `sql.gz` (gzip magic); anything else is refused."""
    try:
        with open(path, "rb") as stream:
            magic = stream.read(5)
    except FileNotFoundError:
        raise ConfigurationError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{path} is a folder, not a backup file") from None
    if magic.startswith(b"PGDMP"):
        return CUSTOM
    if magic.startswith(b"\x1f\x8b"):
        return SQL_GZ
    raise ConfigurationError(
        f"{path} is neither a pg_dump custom archive nor a gzip-compressed SQL dump"
    )


def _dumped_by_major(path: Path) -> int:
    """The pg_dump major version named in a .sql.gz header (0 when it does not say)."""
    try:
        with gzip.open(path, "rb") as stream:
            head = stream.read(4096)
    except (OSError, EOFError) as exc:
        raise DatabaseError(f"{path} is not a readable gzip file: {exc}") from exc
    match = _DUMPED_BY_RE.search(head)
    return int(match.group(1)) if match else 0


def _pg_restore_for(path: Path, major: int, dirs: list[Path] | None, timeout: float) -> PgTool:
    """The lowest pg_restore >= the server's major that can read this archive."""
    tools = sorted(
        (t for t in find_tools("pg_restore", dirs) if t.major >= major), key=lambda t: t.major
    )
    if not tools:
        raise missing_tool("pg_restore", major, find_tools("pg_restore", dirs), "for this server")
    errors = []
    for tool in tools:
        try:
            _check_custom_archive(tool.path, path, timeout)
            return tool
        except DatabaseError as exc:
            errors.append(f"{tool.name} {tool.version}: {exc}")
    raise DatabaseError(f"no pg_restore can read {path}: " + "; ".join(errors))


def restore_database(
    settings: DatabaseSettings,
    path: Path | str,
    *,
    db: pw.Database | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
    tool_dirs: Iterable[Path] | None = None,
    env: Mapping[str, str] | None = None,
    allow_production: bool = False,
    role: str | None = None,
    require_checksum: bool = True,
) -> RestoreResult:
    """Replace the database's objects with the backup's, in one transaction (all or nothing).

    Everything about the file is checked before the database is touched: its checksum (written
    by `backup_database`), a full read, and for plain SQL every statement (see `sqlscript`).
    `role`: restore as that role (`SET ROLE`), so the file's SQL runs without superuser rights.
    Refused (`Refused`) on a remote or production database unless `allow_production`.
    """
    from . import check_server_is_local, refuse_unless_local
    from .sqlscript import TX_ENDED, UnsafeDump, safe_stream, scan_dump

    if settings.url is None:
        raise ConfigurationError("restore needs a resolved database URL")
    if refuse_unless_local(
        settings.url,
        os.environ if env is None else env,
        allow_production=allow_production,
        action="restore into",
    ):
        check_server_is_local(db or bound_database(), settings.url, action="restore into")
    path = Path(path).expanduser().absolute()
    fmt = detect_archive_format(path)
    verify_checksum(path, required=require_checksum)
    version_num, version = server_version_num(db)
    major = version_num // 10000
    dirs = list(tool_dirs) if tool_dirs is not None else None
    conninfo, env = tool_connection(settings)
    started = time.monotonic()
    committed_sent = False
    if fmt == CUSTOM:
        tool = _pg_restore_for(path, major, dirs, timeout)
        args = [
            str(tool.path),
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--no-owner",
            "--exit-on-error",
            "--no-password",
            "--dbname",
            conninfo,
        ]
        if role:
            args.append(f"--role={role}")
        on_line = None
        if progress is not None:
            args.append("--verbose")
            on_line = _restore_meter(tool, path, progress, timeout)
        args.append(str(path))
        _stop_if_cancelled()
        outcome = _run(args, env=env, timeout=timeout, on_line=on_line)
        committed_sent = outcome.returncode == 0
    else:
        try:
            scan = scan_dump(path)
        except UnsafeDump as exc:
            raise UnsafeDump(f"{path.name} was refused at {exc}; nothing was run") from None
        needed = max(major, _dumped_by_major(path))
        tool = _psql_with_restrict(needed, dirs, path)
        args = [
            str(tool.path),
            "--no-psqlrc",
            "--quiet",
            "--no-password",
            "--tuples-only",
            "--set",
            "ON_ERROR_STOP=1",
            "--dbname",
            conninfo,
            "--file",
            "-",
        ]
        lines_fed = 0
        commit_line = 0  # psql numbers its input lines; errors name the line they came from

        def feed(stdin: IO[bytes]) -> None:
            nonlocal lines_fed, commit_line
            for chunk in safe_stream(path, scan, role=role, progress=progress):
                if chunk.endswith(b"COMMIT;\n"):
                    _stop_if_cancelled()
                    commit_line = lines_fed + chunk[: chunk.rindex(b"COMMIT;")].count(b"\n") + 1
                lines_fed += chunk.count(b"\n")
                stdin.write(chunk)

        outcome = _run(
            args,
            env=env,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            feed=feed,
        )
        committed_sent = _reached_commit(outcome.stderr, commit_line)
        if outcome.returncode != 0 and TX_ENDED in outcome.stderr:
            raise DatabaseError(
                f"restore from {path.name} failed: the file ended atb's transaction early, so "
                "part of it may have been committed; check the database before using it"
            )
    if outcome.returncode != 0:
        if committed_sent and fmt != CUSTOM:
            raise DatabaseError(
                f"restore from {path.name} failed at COMMIT; whether it was applied is unknown: "
                f"{_tail(outcome.stderr)}"
            )
        raise DatabaseError(
            f"restore from {path.name} failed before COMMIT and was rolled back; the database "
            f"is unchanged: {_tail(outcome.stderr)}"
        )
    return RestoreResult(
        path=path,
        format=fmt,
        duration_s=time.monotonic() - started,
        tool=tool,
        server_version=version,
    )


def _reached_commit(stderr: str, commit_line: int) -> bool:
    """Whether psql may have run our COMMIT without confirming it (the outcome is then unknown).

    A server ERROR at or before the COMMIT line means the transaction was rolled back; a failure
    reported on an earlier line means COMMIT never ran.
    """
    if not commit_line:  # psql stopped reading before our COMMIT was even written
        return False
    numbers = [int(n) for n in re.findall(r"psql:<stdin>:(\d+):", stderr)]
    if not numbers:  # no input line failed: a start-up error, or the connection died
        return "psql: error:" not in stderr
    last = max(numbers)
    if last < commit_line:
        return False
    return not (last == commit_line and f"<stdin>:{last}: ERROR:" in stderr)


def _psql_with_restrict(minimum_major: int, dirs: list[Path] | None, path: Path) -> PgTool:
    """A psql that knows `\\restrict` (18+, 17.6+, 16.10+, 15.14+, 14.19+, 13.22+)."""
    tools = [t for t in find_tools("psql", dirs) if t.major >= minimum_major and _has_restrict(t)]
    chosen = choose_tool(tools, minimum_major)
    if chosen is None:
        raise missing_tool(
            "psql",
            minimum_major,
            find_tools("psql", dirs),
            f"(a release with \\restrict) to replay {path.name}",
        )
    return chosen


def _has_restrict(tool: PgTool) -> bool:
    minors = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
    if tool.major >= 18:
        return True
    minor = int(tool.version.split(".")[1]) if "." in tool.version else 0
    return tool.major in minors and minor >= minors[tool.major]
