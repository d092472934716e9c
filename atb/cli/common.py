"""What every `atb db` command shares: the --url/--json options, error mapping, output helpers."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from atb.db.errors import DatabaseError
from atb.db.settings import redact_url

url_option = click.option(
    "--url",
    "url",
    envvar=None,
    default=None,
    metavar="URL",
    help="Database URL (default: DATABASE_URL, DATABASE_PUBLIC_URL, PG* variables, "
    "then the local embedded server in development).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def friendly_errors(func: Callable) -> Callable:
    """Expected failures become one clear line and exit 1; never a traceback, never a password."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit):
            raise
        except click.Abort:  # a prompt without an answer (no terminal, EOF): say what to pass
            raise click.ClickException(
                "not confirmed; nothing was changed (without a terminal pass --yes, "
                "or --confirm NAME where the command asks for a name)"
            ) from None
        except DatabaseError as exc:
            raise click.ClickException(redact_url(str(exc))) from None
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise click.ClickException(redact_url(os_error_message(exc))) from None

    return wrapper


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so `finally` blocks and child clean-up run."""


def all_or_nothing(func: Callable) -> Callable:
    """For commands that change nothing unless they finish: Ctrl-C and SIGTERM stop the work
    (the PostgreSQL tool is killed, temporary files removed) and exit 130 / 143 with one line.

    The handlers also record the request, so the work stops at its next safe point even when
    the interrupt itself was swallowed (Python ignores exceptions raised in some callbacks).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from atb.db.admin.backup import Cancelled, request_cancel, reset_cancel

        def stop(signum: int, frame: object) -> None:
            request_cancel(signum)
            raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()

        reset_cancel()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        with contextlib.suppress(ValueError):  # not the main thread: no handler to install
            for sig in previous:
                signal.signal(sig, stop)
        try:
            return func(*args, **kwargs)
        except (KeyboardInterrupt, Terminated, Cancelled) as exc:
            terminated = isinstance(exc, Terminated) or (
                isinstance(exc, Cancelled) and exc.args[0] == signal.SIGTERM
            )
            word = "terminated" if terminated else "interrupted"
            click.echo(f"Error: {word}; nothing was changed", err=True)
            sys.exit(143 if terminated else 130)
        finally:
            with contextlib.suppress(ValueError, TypeError):
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return wrapper


def os_error_message(exc: OSError) -> str:
    """`cannot write /proc/x.dump: No such file or directory`, not a bare `FileNotFoundError`."""
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"cannot use {exc.filename}: {reason}"
    return reason


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


def interactive() -> bool:
    """True when a person is at the terminal (prompts and progress make sense)."""
    return sys.stdin.isatty() and sys.stdout.isatty()
