"""Split an AlertConfig's rules across evaluator shards by a stable hash of the rule uid."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol, TypeVar


class HasUid(Protocol):
    @property
    def uid(self) -> str: ...


R = TypeVar("R", bound=HasUid)


def shard_of(uid: str, shards: int) -> int:
    """The shard (0-based) owning `uid`: sha256, stable across processes and Python versions."""
    if shards < 1:
        raise ValueError("shards must be >= 1")
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") % shards


def assigned(rules: Iterable[R], index: int, shards: int) -> list[R]:
    """The rules of shard `index` out of `shards`."""
    if not 0 <= index < shards:
        raise ValueError(f"shard index {index} is outside 0..{shards - 1}")
    return [r for r in rules if shard_of(r.uid, shards) == index]


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` → (I, N), 0-based I."""
    i, _, n = text.partition("/")
    index, shards = int(i), int(n)
    if not 0 <= index < shards:
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N")
    return index, shards
