"""Subcommands beyond validate, registered here so each lives in its own module."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the other subcommands (render, preview, operator, evaluator, ...) as they exist."""
    from . import operator_cmd
    from .render import add_parser as add_render

    add_render(sub)
    operator_cmd.add_parser(sub)
