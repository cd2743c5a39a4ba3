"""Checks of a command's input and output paths, made before any work starts: a missing or
unreadable file is one line naming the option, the path and the problem (exit 2)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import UsageError


def readable_file(path: str | Path, what: str) -> Path:
    """``path`` as a file this process can read, or ``UsageError``."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {p}: no such file")
    if p.is_dir():
        raise UsageError(f"{what} {p}: is a directory, not a file")
    try:
        with p.open("rb") as fh:
            fh.read(1)
    except OSError as e:
        raise UsageError(f"{what} {p}: cannot be read ({e.strerror or e})") from None
    return p


def readable_paths(paths: Iterable[str | Path], what: str = "PATH") -> None:
    """Files must be readable files, directories readable directories."""
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UsageError(f"{what} {p}: no such file or directory")
        if p.is_dir():
            if not os.access(p, os.R_OK | os.X_OK):
                raise UsageError(f"{what} {p}: the directory cannot be read (permission denied)")
        else:
            readable_file(p, what)


def writable_file(path: str | Path, what: str, suffixes: tuple[str, ...]) -> Path:
    """A file ``path`` can be written: a known suffix, an existing writable directory (never created)."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise UsageError(f"{what} {p}: unknown file type {p.suffix or '(none)'!r} (allowed: {', '.join(suffixes)})")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{what} {p}: the directory {parent} does not exist (create it first)")
    if p.is_dir():
        raise UsageError(f"{what} {p}: is a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{what} {p}: cannot be written (permission denied)")
    return p
