"""`python -m atb ...` runs the CLI, for environments where the console script is not on PATH."""

from atb.cli import main

main()
