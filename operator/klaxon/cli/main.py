"""The ``klaxon`` command line: one entry point, one subcommand per task.

Exit status: 0 success, 1 a failure or something invalid, 2 a usage error (bad arguments, an
input that cannot be read, no Kubernetes credentials), 130 interrupted, 141 stdout closed early
(``klaxon ... | head``). Nothing here imports more than argparse needs: every subcommand
imports its own machinery when it runs, so ``klaxon --version`` and ``klaxon validate`` start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from .errors import CliError

Command = Callable[[argparse.Namespace], int]

#: Set to print the traceback of an unexpected error (a bug) along with its one-line summary.
DEBUG_ENV = "KLAXON_DEBUG"


def _validate(args: argparse.Namespace) -> int:
    from .validate import run

    return run(args.paths, quiet=args.quiet)


def build_parser(prog: str = "klaxon") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Klaxon: alerting as Kubernetes custom resources.")
    parser.add_argument("--version", action="version", version=f"klaxon {__version__}")
    parser.set_defaults(prog=prog)  # for the few commands that print their own messages
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
    """Parse and run one command; a ``CliError`` becomes one line on stderr and its exit status."""
    from .entries import with_default_action

    parser = build_parser(prog)
    args = parser.parse_args(with_default_action(list(sys.argv[1:] if argv is None else argv)))
    func: Command = args.func
    try:
        return func(args)
    except CliError as e:
        print(f"{prog} {args.command}: {e}", file=sys.stderr)
        return e.code


def _stdout_closed() -> int:
    # The reader went away (`| head`): stop quietly, and point stdout at /dev/null so the
    # interpreter's final flush does not report the broken pipe again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for tools killed by the closed pipe


def guarded(call: Callable[[], int], prog: str) -> int | str | None:
    """Run ``call`` so that no traceback reaches the user (the last resort: commands raise
    ``CliError`` with a message of their own for everything they can foresee)."""
    code: int | str | None
    try:
        code = call()
    except SystemExit as e:  # argparse's usage errors and --help
        code = e.code
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as e:  # a bug: one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            import traceback

            traceback.print_exc()
        what = " ".join(str(e).split())[:300]
        print(
            f"{prog}: unexpected error: {type(e).__name__}{': ' + what if what else ''} "
            f"(a bug in Klaxon: please report it with the command you ran; {DEBUG_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return code


def entry() -> None:
    sys.exit(guarded(main, "klaxon"))


def kubectl_main() -> None:
    sys.exit(guarded(lambda: main(prog="kubectl klaxon"), "kubectl klaxon"))
