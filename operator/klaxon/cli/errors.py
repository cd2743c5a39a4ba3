"""The errors a subcommand raises for the user to fix; ``klaxon.cli.main`` prints them as one line."""

from __future__ import annotations


class CliError(Exception):
    """A problem the user can act on: printed as ``PROG COMMAND: message``, exit status ``code`` (1)."""

    code = 1


class UsageError(CliError):
    """Bad arguments or inputs that cannot be read (a missing file, no kubeconfig): exit status 2."""

    code = 2
