"""The ``klaxon`` command line: one entry point, one subcommand per task."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .. import __version__

Command = Callable[[argparse.Namespace], int]


def _validate(args: argparse.Namespace) -> int:
    from .validate import run

    return run(args.paths, quiet=args.quiet)


def build_parser(prog: str = "klaxon") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Klaxon: alerting as Kubernetes custom resources.")
    parser.add_argument("--version", action="version", version=f"klaxon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "validate",
        help="validate Klaxon manifests (files or directories) without a cluster",
        description="Validate AlertRule, AlertConfig and NotificationChannel manifests. "
        "Exit 0 when all are valid, 1 when any is invalid, 2 on usage errors.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="YAML files or directories (searched recursively)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p.set_defaults(func=_validate)

    from . import extra

    extra.register(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "klaxon") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    func: Command = args.func
    return func(args)


def entry() -> None:
    sys.exit(main())


def kubectl_main() -> None:
    sys.exit(main(prog="kubectl klaxon"))
