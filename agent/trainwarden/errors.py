"""Errors the command line turns into exit codes (cli.py is the one place that does)."""


class UsageError(Exception):
    """Bad flags or arguments: exit 2."""


class NothingFound(Exception):
    """Nothing to read where the user pointed: exit 1."""
