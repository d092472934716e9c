"""The `atb` command line (entry point `atb = atb.cli:main`)."""

from __future__ import annotations

import os
import sys

import click

from atb import __version__

from .db import db_group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="atb")
def cli() -> None:
    """atb: the persistence layer of the atb trading bot.

    \b
    Examples:
      atb db up          # start the local PostgreSQL (development; no Docker)
      atb db migrate     # bring the schema to head
      atb db status      # which migrations are applied
    """


cli.add_command(db_group)


def main() -> None:
    """Console-script entry point; a closed pipe (`atb db status | head`) ends quietly."""
    try:
        cli(prog_name="atb")
    except BrokenPipeError:
        quiet_broken_pipe()


def quiet_broken_pipe() -> None:
    """The reader went away: point stdout at /dev/null so the exit flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(1)
