"""Read a plain-SQL dump (as pg_dump writes it) and turn it into a stream psql can replay safely.

psql executes whatever its input says: meta-commands (`\\!`, `\\o`, `\\copy`, `\\connect`) and
transaction control (`COMMIT`) would let a backup file run programs on the operator's machine or
commit half a restore. So a `.sql.gz` file is never handed to psql as it is:

- `scan_dump()` lexes the whole file first (quotes, dollar quotes, comments and COPY data as
  psql and the server read them) and refuses it, naming the line, unless every statement is one
  pg_dump writes: DDL, `COPY table (cols) FROM stdin`, and `SET` / `set_config` of the few settings
  pg_dump sets. Any backslash command, `BEGIN`/`COMMIT`/`ROLLBACK`/`END`, `SET TRANSACTION`, `DO`,
  psql variables, `COPY ... TO` or `PROGRAM` is refused before anything runs. The file must end
  with pg_dump's completion marker, so a truncated file is refused too.
- `safe_stream()` yields what psql gets: `\\restrict KEY` first (psql >= 15.14 then refuses every
  meta-command; the file cannot know KEY), our own `BEGIN`, and before every statement of the file
  `SET standard_conforming_strings = on` and `SET client_encoding = 'UTF8'`, so the server lexes
  each statement exactly as the scanner did whatever a function in the file changed. `COMMIT` is
  only written after the last byte was read and checked against the scan's digest; a stream cut
  anywhere before that ends psql without a commit, and the server rolls back.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from atb.db.errors import ConfigurationError, DatabaseError

__all__ = ["TX_ENDED", "DumpScan", "UnsafeDump", "safe_stream", "scan_dump"]

Progress = Callable[[int, int], None]

COMPLETE_MARKER = "-- PostgreSQL database dump complete"
TXID_SETTING = "atb.restore_txid"
# The error text psql reports when the file ended our transaction (it cannot, once scanned).
TX_ENDED = "restore-transaction-was-ended-by-the-file"

_RESTRICT_RE = re.compile(r"^\\(restrict|unrestrict) ([A-Za-z0-9]+)\s*$")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_COPY_RE = re.compile(
    rf"^COPY\s+{_IDENT}(?:\.{_IDENT})?\s*(?:\(\s*{_IDENT}(?:\s*,\s*{_IDENT})*\s*\))?\s+FROM\s+stdin\s*;$",
    re.IGNORECASE | re.DOTALL,
)
# What pg_dump SETs at the top of a dump; anything else could change how later text is read.
_SET_ALLOWED = {
    "statement_timeout": None,
    "lock_timeout": None,
    "idle_in_transaction_session_timeout": None,
    "transaction_timeout": None,
    "client_encoding": {"'utf8'"},
    "standard_conforming_strings": {"on"},
    "check_function_bodies": None,
    "xmloption": None,
    "client_min_messages": None,
    "row_security": None,
    "default_tablespace": None,
    "default_table_access_method": None,
    "default_with_oids": None,
    "search_path": None,
}
_SELECT_ALLOWED = re.compile(
    r"^SELECT\s+pg_catalog\.(setval|lo_create|lo_open|lowrite|lo_close)\s*\("
    r"|^SELECT\s+pg_catalog\.set_config\(\s*'search_path'\s*,",
    re.IGNORECASE,
)
_STATEMENT_WORDS = {
    "CREATE",
    "ALTER",
    "DROP",
    "COMMENT",
    "GRANT",
    "REVOKE",
    "SECURITY",
    "INSERT",
    "REFRESH",
    "SET",
    "SELECT",
    "COPY",
}


class UnsafeDump(ConfigurationError):
    """The plain-SQL file holds something atb will not feed to psql; nothing was run."""


@dataclass(frozen=True)
class DumpScan:
    """What a full read of the file found: its digest, statement count and the size read."""

    sha256: str
    statements: int
    compressed_bytes: int


@dataclass
class _Piece:
    """One unit of the file: a statement (to check and guard) or verbatim text."""

    text: str
    line: int
    statement: bool


def _open_lines(path: Path, progress: Progress | None = None) -> Iterator[str]:
    """The file's lines, decoded strictly: a dump that is not UTF-8 is refused, not guessed.

    `progress(compressed bytes read, file size)` is called every few thousand lines.
    """
    try:
        with (
            open(path, "rb") as raw,
            gzip.GzipFile(fileobj=raw) as unzipped,
            io.TextIOWrapper(unzipped, encoding="utf-8", errors="strict", newline="") as stream,
        ):
            if progress is None:
                yield from stream
                return
            total = max(1, os.fstat(raw.fileno()).st_size)
            for count, line in enumerate(stream):
                if count % 4096 == 0:
                    progress(raw.tell(), total)
                yield line
            progress(total, total)
    except UnicodeDecodeError as exc:
        raise UnsafeDump(f"{path.name} is not UTF-8 text ({exc.reason}); refusing it") from None
    except (OSError, EOFError) as exc:
        raise DatabaseError(
            f"{path.name} is not a complete gzip file ({exc}); nothing was restored"
        ) from None


def _pieces(path: Path, progress: Progress | None = None) -> Iterator[_Piece]:
    """Split the file into statements and verbatim parts, as psql reads it (COPY data included).

    A statement's text keeps its leading comments and white space: psql skips those itself.
    """
    buf: list[str] = []
    start_line = 0
    comment_depth = 0
    quote: str | None = None  # "'", "E'", '"', or a dollar tag like "$x$"
    restrict_key: str | None = None
    in_copy = False
    lineno = 0
    for line in _open_lines(path, progress):
        lineno += 1
        if in_copy:
            yield _Piece(line, lineno, False)
            if line.rstrip("\r\n") == "\\.":
                in_copy = False
            continue
        if quote is None and comment_depth == 0 and not _strip_comments("".join(buf)).strip():
            match = _RESTRICT_RE.match(line)
            if match:  # pg_dump's own \restrict pair; ours replaces it
                kind, key = match.groups()
                if kind == "restrict" and restrict_key is None:
                    restrict_key = key
                    continue
                if kind == "unrestrict" and key == restrict_key:
                    continue
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if comment_depth:
                two = line[i : i + 2]
                step = 2 if two in ("*/", "/*") else 1
                comment_depth += {"*/": -1, "/*": 1}.get(two, 0)
                buf.append(line[i : i + step])
                i += step
                continue
            if quote is not None:
                step = 1
                if quote == "E'" and ch == "\\":
                    step = 2
                elif quote in ("'", "E'", '"'):
                    if ch == quote[-1]:
                        if line.startswith(ch * 2, i):
                            step = 2
                        else:
                            quote = None
                elif line.startswith(quote, i):
                    step = len(quote)
                    quote = None
                buf.append(line[i : i + step])
                i += step
                continue
            if line.startswith("--", i):
                buf.append(line[i:])
                break
            if line.startswith("/*", i):
                comment_depth = 1
                buf.append("/*")
                i += 2
                continue
            if ch == "\\":
                raise UnsafeDump(
                    f"line {lineno}: a psql meta-command ({line[i : i + 20].strip()!r}); "
                    "atb never runs these from a backup file"
                )
            if not ch.isspace() and not _strip_comments("".join(buf)).strip():
                start_line = lineno
            prev = line[i - 1] if i > 0 else " "
            if ch == "'":
                quote = "E'" if prev in "Ee" and (i < 2 or not _is_word(line[i - 2])) else "'"
            elif ch == '"':
                quote = '"'
            elif ch == "$" and not _is_word(prev):
                tag = re.match(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$", line[i:])
                if tag:
                    quote = tag.group(0)
                    buf.append(quote)
                    i += len(quote)
                    continue
            elif ch == ":" and prev != ":" and i + 1 < n and line[i + 1] != ":":
                if line[i + 1].isalpha() or line[i + 1] in "_'\"{":
                    raise UnsafeDump(
                        f"line {lineno}: a psql variable reference ({line[i : i + 20].strip()!r}); "
                        "atb never expands these from a backup file"
                    )
            elif ch == ";":
                buf.append(ch)
                text = "".join(buf)
                buf = []
                yield _Piece(text, start_line, True)
                rest = line[i + 1 :]
                if _COPY_RE.match(_strip_comments(text).strip()):
                    if rest.strip():
                        raise UnsafeDump(f"line {lineno}: text after a COPY ... FROM stdin")
                    yield _Piece(rest, lineno, False)
                    in_copy = True
                    break
                i += 1
                continue
            buf.append(ch)
            i += 1
    if _strip_comments("".join(buf)).strip() or quote or comment_depth or in_copy:
        raise DatabaseError(
            f"{path.name} ends in the middle of a statement (line {lineno}): it is truncated; "
            "nothing was restored"
        )


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*", "", text)


def _check_statement(piece: _Piece) -> None:
    """Refuse anything pg_dump does not write (see the module docstring)."""
    text = _strip_comments(piece.text).strip()
    word_match = _WORD_RE.match(text)
    word = word_match.group(0).upper() if word_match else text[:10]
    where = f"line {piece.line}"
    if word not in _STATEMENT_WORDS:
        raise UnsafeDump(
            f"{where}: `{word}` statements are not restored from a plain-SQL file "
            "(only what pg_dump writes: DDL, COPY ... FROM stdin, SET, setval)"
        )
    if word == "CREATE" and re.search(r"\bBEGIN\s+ATOMIC\b", text, re.IGNORECASE):
        raise UnsafeDump(
            f"{where}: a SQL-standard function body (BEGIN ATOMIC) cannot be checked in a "
            "plain-SQL file; back up in the custom format (*.dump) instead"
        )
    if word == "COPY" and not _COPY_RE.match(text):
        raise UnsafeDump(f"{where}: only `COPY table (columns) FROM stdin;` is allowed")
    if word == "SELECT" and not _SELECT_ALLOWED.match(text):
        raise UnsafeDump(f"{where}: only pg_dump's setval/set_config/lo_* SELECTs are allowed")
    if word == "SET":
        match = re.match(
            r"^SET\s+(?:SESSION\s+)?([A-Za-z_]+)\s*(?:=|TO)\s*(.*?)\s*;$",
            text,
            re.IGNORECASE | re.DOTALL,
        )
        name = match.group(1).lower() if match else ""
        if name not in _SET_ALLOWED:
            raise UnsafeDump(f"{where}: `{text[:60]}` is not a setting pg_dump writes")
        allowed = _SET_ALLOWED[name]
        if allowed is not None and match and match.group(2).lower() not in allowed:
            raise UnsafeDump(
                f"{where}: {name} must be {' or '.join(sorted(allowed))} in a restorable dump"
            )
    if word == "INSERT" and re.search(r"\bRETURNING\b", text, re.IGNORECASE):
        raise UnsafeDump(f"{where}: INSERT ... RETURNING is not something pg_dump writes")


def _pieces_checked(path: Path, progress: Progress | None = None) -> Iterator[_Piece]:
    for piece in _pieces(path, progress):
        if piece.statement:
            _check_statement(piece)
        yield piece


def _tail_lines(path: Path, count: int = 8) -> list[str]:
    tail: list[str] = []
    for line in _open_lines(path):
        if line.strip():
            tail.append(line.strip())
            tail = tail[-count:]
    return tail


def scan_dump(path: Path) -> DumpScan:
    """Read and check the whole file (gzip CRC, every statement, completion marker); run nothing."""
    digest = hashlib.sha256()
    statements = 0
    with open(path, "rb") as raw:
        while chunk := raw.read(1 << 20):
            digest.update(chunk)
    for piece in _pieces_checked(path):
        statements += piece.statement
    if COMPLETE_MARKER not in _tail_lines(path):
        raise DatabaseError(
            f"{path.name} has no pg_dump completion marker at its end: it is truncated or not a "
            "pg_dump file; nothing was restored"
        )
    return DumpScan(digest.hexdigest(), statements, path.stat().st_size)


def safe_stream(
    path: Path, scan: DumpScan, *, role: str | None = None, progress: Progress | None = None
) -> Iterator[bytes]:
    """The bytes psql reads: restricted, one transaction of ours, COMMIT only after a full re-check.

    Raises DatabaseError (before COMMIT is yielded) when the file changed since `scan`.
    """
    key = secrets.token_hex(16)
    guard = "SET standard_conforming_strings = on;\nSET client_encoding = 'UTF8';\n"
    prelude = f"\\restrict {key}\n" + guard
    if role:
        prelude += "SET ROLE " + _quote_ident(role) + ";\n"
    prelude += (
        "BEGIN;\n"
        f"SELECT pg_catalog.set_config('{TXID_SETTING}', pg_catalog.txid_current()::text, false);\n"
    )
    yield prelude.encode()
    for piece in _pieces_checked(path, progress):
        if piece.statement:
            yield (guard + piece.text).encode()
        else:
            yield piece.text.encode()
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        while chunk := raw.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != scan.sha256:
        raise DatabaseError(
            f"{path.name} changed while it was being restored; nothing was restored"
        )
    yield (
        "\n" + guard + "SELECT (CASE WHEN "
        f"pg_catalog.current_setting('{TXID_SETTING}') = pg_catalog.txid_current()::text "
        f"THEN '1' ELSE '{TX_ENDED}' END)::int;\n"
        "COMMIT;\n"
    ).encode()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
