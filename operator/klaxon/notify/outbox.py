"""The durable outbox: one SQLite file (WAL) on the evaluator's volume.

Why SQLite: the policy state of an alert instance and the rows it enqueues are written in one
transaction, so a crash leaves either both or neither — a restart can neither lose a queued
notification nor decide to send it again. Each row has a unique idempotency key (``INSERT OR
IGNORE``), so a replayed transition enqueues nothing new. A row is marked delivered only after
the receiver answered; a crash between the two re-sends it with the same ``Idempotency-Key``
(at-least-once on the wire, exactly-once for receivers that dedupe). ``synchronous=NORMAL``
in WAL mode survives a process crash (a pod restart); ``durable=True`` (FULL) also survives
power loss at the cost of an fsync per commit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idem TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    notification TEXT NOT NULL,
    allow_private INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    okey TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_at);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (okey, status, id);
CREATE TABLE IF NOT EXISTS keys (
    k TEXT PRIMARY KEY, namespace TEXT NOT NULL, rule TEXT NOT NULL, firing INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_firing ON keys (firing);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


def order_key(channel: str, notification: dict[str, Any]) -> str:
    """Messages about one alert instance on one channel are delivered in the order enqueued."""
    parts = (channel, notification.get("rule_namespace"), notification.get("rule_name"), notification.get("dedup_key"))
    return "\x1f".join(str(p) for p in parts)


@dataclass(frozen=True)
class Row:
    id: int
    idem: str
    namespace: str
    channel: str
    kind: str
    notification: dict[str, Any]
    allow_private: bool
    attempts: int
    created: float
    okey: str = ""


class Outbox:
    def __init__(self, path: str | Path, durable: bool = False) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- rows --------------------------------------------------------------------------
    def enqueue(
        self,
        idem: str,
        namespace: str,
        channel: str,
        kind: str,
        notification: dict[str, Any],
        allow_private: bool,
        now: float,
    ) -> bool:
        """Add a row unless its idempotency key exists; True when added. Call inside a transaction."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO outbox (idem, namespace, channel, kind, notification, allow_private,"
            " next_at, created, updated, okey) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                idem,
                namespace,
                channel,
                kind,
                json.dumps(notification),
                int(allow_private),
                now,
                now,
                now,
                order_key(channel, notification),
            ),
        )
        return cur.rowcount == 1

    def due(self, now: float, limit: int, exclude: set[int], busy: set[str] | None = None) -> list[Row]:
        """Rows to send now, at most one per order key: the oldest pending one, and only while no
        other row of that key is in flight (``busy``) — a resolve never overtakes its trigger."""
        rows = self.db.execute(
            "SELECT id, idem, namespace, channel, kind, notification, allow_private, attempts, created, okey"
            " FROM outbox AS o"
            " WHERE status = 'pending' AND next_at <= ?"
            " AND NOT EXISTS (SELECT 1 FROM outbox AS p"
            "   WHERE p.okey = o.okey AND p.status = 'pending' AND p.id < o.id)"
            " ORDER BY next_at, id LIMIT ?",
            (now, limit + len(exclude)),
        ).fetchall()
        taken = set(busy or ())
        out = []
        for r in rows:
            if r[0] in exclude or r[9] in taken:
                continue
            taken.add(r[9])
            out.append(Row(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), bool(r[6]), r[7], r[8], r[9]))
            if len(out) == limit:
                break
        return out

    def next_due(self) -> float | None:
        row = self.db.execute("SELECT MIN(next_at) FROM outbox WHERE status = 'pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def finish(
        self, row_id: int, status: str, attempts: int, message: str, now: float, next_at: float | None = None
    ) -> None:
        self.db.execute(
            "UPDATE outbox SET status = ?, attempts = ?, message = ?, updated = ?,"
            " next_at = COALESCE(?, next_at)"
            " WHERE id = ?",
            (status, attempts, message, now, next_at, row_id),
        )

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())

    def prune(self, before: float) -> int:
        """Forget finished rows older than ``before`` (their keys no longer block a replay)."""
        return self.db.execute("DELETE FROM outbox WHERE status != 'pending' AND updated < ?", (before,)).rowcount

    # -- per-instance policy state -----------------------------------------------------------
    def get_key(self, k: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT state FROM keys WHERE k = ?", (k,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_key(self, k: str, namespace: str, rule: str, firing: bool, state: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO keys (k, namespace, rule, firing, state) VALUES (?, ?, ?, ?, ?)",
            (k, namespace, rule, int(firing), json.dumps(state)),
        )

    def firing_keys(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        rows = self.db.execute("SELECT k, namespace, rule, state FROM keys WHERE firing = 1").fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    # -- small durable facts (channel counters, handled test-delivery tokens) ----------------
    def get_meta(self, k: str) -> Any:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_meta(self, k: str, v: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, json.dumps(v)))
