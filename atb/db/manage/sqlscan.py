"""A small SQL lexer for `execute_query(read_only=True)`: statements and words outside literals.

Enough of PostgreSQL's lexical rules (quotes, E'' escapes, "identifiers", $tag$ dollar quotes,
-- and nested /* */ comments) that a `;` or keyword inside a literal is never mistaken for code.
"""

from __future__ import annotations

import re

from ..errors import ValidationError

# A tag is an identifier: ASCII letters, digits after the first, _, and every non-ASCII character
# (PostgreSQL accepts any high-bit byte). `[^\x00-\x7f]` says that in one cheap set: a range up to
# \uffff made `re` build a 64k-entry table at import, 5 ms of every `from atb.db import ...`.
_DOLLAR_TAG = re.compile(r"\$(?:(?:[A-Za-z_]|[^\x00-\x7f])(?:[A-Za-z_0-9]|[^\x00-\x7f])*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9$]*")


def scan(sql: str) -> list[list[str]]:
    """The statements of `sql` as lists of lower-cased words found outside literals/comments."""
    statements: list[list[str]] = [[]]
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not sql[i - 2].isalnum())
            i = _skip_quoted(sql, i, "'", escapes)
        elif ch == '"':
            i = _skip_quoted(sql, i, '"', False)
        elif ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif ch == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif ch == "$" and (m := _DOLLAR_TAG.match(sql, i)) and not (i and sql[i - 1].isalnum()):
            end = sql.find(m.group(), m.end())
            if end == -1:
                raise ValidationError("sql", "unterminated dollar-quoted string")
            i = end + len(m.group())
        elif ch == ";":
            statements.append([])
            i += 1
        elif (m := _WORD.match(sql, i)) and not (i and (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            statements[-1].append(m.group().lower())
            i = m.end()
        else:
            i += 1
    return [words for words in statements if words]


def _skip_quoted(sql: str, start: int, quote: str, escapes: bool) -> int:
    i, n = start + 1, len(sql)
    while i < n:
        ch = sql[i]
        if escapes and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and sql[i + 1] == quote:  # doubled quote
                i += 2
                continue
            return i + 1
        i += 1
    raise ValidationError("sql", f"unterminated {quote}-quoted text")


def _skip_block_comment(sql: str, start: int) -> int:
    depth, i, n = 0, start, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise ValidationError("sql", "unterminated /* comment")


# First words that end or change the transaction, or change the session: never read-only.
REFUSED_FIRST_WORDS = frozenset(
    {
        "commit",
        "rollback",
        "end",
        "abort",
        "begin",
        "start",
        "savepoint",
        "release",
        "prepare",
        "set",
        "reset",
        "discard",
        "listen",
        "unlisten",
        "load",
        "attach",
        "detach",
        "declare",
        "close",
        "deallocate",
        "lock",
        "do",
        "call",
        "copy",
        "vacuum",
        "checkpoint",
    }
)
# Words (function names) that can leave state on the session: the connection is not reused.
SESSION_STATE_WORDS = frozenset(
    {
        "set_config",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "dblink_connect",
        "pg_notify",
        "lo_open",
        "setval",
        "nextval",
        "txid_current",
        "pg_current_xact_id",
        "pg_listening_channels",
        "set_role",
    }
)


def check_read_only(sql: str) -> bool:
    """Refuse what read-only mode cannot run safely; True when the session may carry state after."""
    statements = scan(sql)
    if len(statements) != 1:
        raise ValidationError(
            "sql", f"read-only mode runs exactly one statement (found {len(statements)})"
        )
    words = statements[0]
    if words[0] in REFUSED_FIRST_WORDS:
        raise ValidationError(
            "sql",
            f"{words[0].upper()} is not allowed in read-only mode (it changes the transaction or session)",
        )
    return any(word in SESSION_STATE_WORDS for word in words)
