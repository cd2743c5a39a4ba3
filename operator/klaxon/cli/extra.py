"""Subcommands beyond validate, registered here so each lives in its own module.

Imports are deferred to the subcommand modules themselves where they are heavy (kopf,
aiohttp, matplotlib), so `klaxon validate` stays fast.
"""

from __future__ import annotations

import argparse

from . import entries, evaluator_cmd, operator_cmd, status, testrule
from .preview import add_parser as add_preview
from .render import add_parser as add_render


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add render, preview, test-rule, operator, evaluator, entries and status."""
    add_render(sub)
    add_preview(sub)
    testrule.register(sub)
    operator_cmd.add_parser(sub)
    evaluator_cmd.register(sub)
    entries.register(sub)
    status.register(sub)
