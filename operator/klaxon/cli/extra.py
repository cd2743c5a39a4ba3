"""Subcommands beyond validate, registered here so each lives in its own module."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the other subcommands (render, preview, operator, evaluator, ...) as they exist."""
    from .render import add_parser as add_render

    add_render(sub)

    from .preview import add_parser as add_preview

    add_preview(sub)

    from . import evaluator_cmd

    evaluator_cmd.register(sub)

    from . import testrule

    testrule.register(sub)
