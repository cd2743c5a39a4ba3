"""The durable outbox: one SQLite file (WAL) on the evaluator's volume.

Why SQLite: the policy state of an alert instance and the rows it enqueues are written in one
transaction, so a crash leaves either both or neither — a restart can neither lose a queued
notification nor decide to send it again. Each row has a unique idempotency key (``INSERT OR
IGNORE``), so a replayed transition enqueues nothing new. A row is marked delivered in its own
transaction as soon as the receiver answered; a crash between the answer and that commit
re-sends the row with the same ``Idempotency-Key``: delivery is at-least-once, and receivers that
drop repeated keys see each notification once. ``synchronous=NORMAL`` in WAL mode survives a
process crash (a pod restart); ``durable=True`` (FULL) also survives power loss at the cost of
an fsync per commit.

When the file cannot be written (a full disk, a read-only volume), the outbox carries on in
memory — seeded from what the file holds — and says so (``problem``, an ERROR log line), writing
itself back to the file as soon as it can (``restore``). Nothing is marked delivered that was
not; what only memory holds is lost if the process ends first, and is then re-sent.

Row status: ``pending`` → ``delivered`` | ``failed`` (given up) | ``superseded`` (a repeat that a
newer notification about the same alert on the same channel made moot).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

LOG = logging.getLogger("klaxon.notify")
T = TypeVar("T")

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
CREATE INDEX IF NOT EXISTS outbox_channel ON outbox (namespace, channel, status, id);
CREATE TABLE IF NOT EXISTS keys (
    k TEXT PRIMARY KEY, namespace TEXT NOT NULL, rule TEXT NOT NULL, firing INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_firing ON keys (firing);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""

#: SQLite result codes that mean "the storage cannot take a write", not a bug in the statement.
_STORAGE_CODES = {
    3,  # SQLITE_PERM
    8,  # SQLITE_READONLY
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
}


def storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the file cannot be written (full, read-only, I/O error) — not a bug."""
    if isinstance(exc, OSError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and (code & 0xFF) in _STORAGE_CODES


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
    message: str = ""


_ROW = "id, idem, namespace, channel, kind, notification, allow_private, attempts, created, okey, message"


def _row(r: tuple[Any, ...]) -> Row:
    return Row(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), bool(r[6]), r[7], r[8], r[9], r[10])


class Outbox:
    def __init__(self, path: str | Path, durable: bool = False) -> None:
        self.path = Path(path)
        self.durable = durable
        #: Why the outbox lives in memory (the file cannot be written); None while it is on disk.
        self.problem: str | None = None
        try:
            self.db = self._open_file()
        except (sqlite3.Error, OSError) as exc:
            self.db = self._to_memory(exc, None)

    def _open_file(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create directory {self.path.parent}: {exc.strerror}") from exc
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _to_memory(self, exc: BaseException, current: sqlite3.Connection | None) -> sqlite3.Connection:
        """Carry on in memory, starting from what the file holds (if it can still be read)."""
        mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        copied = False
        sources: list[Callable[[], sqlite3.Connection]] = []
        if current is not None:
            sources.append(lambda: current)
        sources += [
            lambda: sqlite3.connect(f"file:{self.path}?mode=ro", uri=True),
            lambda: sqlite3.connect(f"file:{self.path}?immutable=1", uri=True),
        ]
        for open_source in sources if self.path.is_file() or current is not None else ():
            try:
                src = open_source()
                try:
                    src.backup(mem)
                    copied = True
                finally:
                    if src is not current:
                        src.close()
                break
            except sqlite3.Error:
                continue
        mem.executescript(SCHEMA)
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        code = getattr(exc, "sqlite_errorname", None)
        self.problem = f"{self.path} cannot be written ({reason}{f', {code}' if code else ''})"
        LOG.error(
            "notification outbox %s: working from memory%s; notifications queued or marked delivered from now on "
            "are lost with the process (and then re-sent) until the file can be written again",
            self.problem,
            " (a copy of the file)" if copied else "",
        )
        return mem

    def restore(self) -> bool:
        """Write an in-memory outbox back to its file and use the file again; True when on disk."""
        if self.problem is None:
            return True
        try:
            disk = self._open_file()
        except (sqlite3.Error, OSError):
            return False
        try:
            self.db.backup(disk)
        except sqlite3.Error:
            disk.close()
            return False
        self.db.close()
        self.db = disk
        LOG.warning("notification outbox %s is written to disk again", self.path)
        self.problem = None
        return True

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
        try:
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def write(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (reads and writes through this outbox) in one transaction. When the file cannot
        take it, move to memory and run ``fn`` again there: the caller never loses the write."""
        try:
            with self.transaction():
                return fn()
        except (sqlite3.Error, OSError) as exc:
            if not storage_failure(exc) or self.problem is not None:
                raise
            old = self.db
            self.db = self._to_memory(exc, old)
            old.close()
        with self.transaction():
            return fn()

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
    ) -> int | None:
        """Add a row unless its idempotency key exists; its id when added. Call inside a transaction."""
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
        return cur.lastrowid if cur.rowcount == 1 else None

    def supersede(self, row_id: int, exclude: Iterable[int], now: float) -> int:
        """Pending repeats queued before row ``row_id`` for the same alert and channel are moot: the
        newer row says as much (or more). Rows in ``exclude`` (in flight) are left alone."""
        skip = list(exclude)
        marks = ",".join("?" * len(skip))
        cur = self.db.execute(
            "UPDATE outbox SET status = 'superseded', updated = ?, message = 'superseded by a newer notification'"
            " WHERE status = 'pending' AND kind = 'repeat' AND id < ?"
            " AND okey = (SELECT okey FROM outbox WHERE id = ?)"
            + (f" AND id NOT IN ({marks})" if skip else ""),
            (now, row_id, row_id, *skip),
        )
        return cur.rowcount

    def overflow(self, namespace: str, channel: str, capacity: int, exclude: Iterable[int]) -> list[Row]:
        """The oldest pending rows of a channel beyond ``capacity`` (not those in ``exclude``)."""
        (count,) = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE namespace = ? AND channel = ? AND status = 'pending'",
            (namespace, channel),
        ).fetchone()
        if count <= capacity:
            return []
        skip = set(exclude)
        rows = self.db.execute(
            f"SELECT {_ROW} FROM outbox WHERE namespace = ? AND channel = ? AND status = 'pending'"
            " ORDER BY id LIMIT ?",
            (namespace, channel, count - capacity + len(skip)),
        ).fetchall()
        return [_row(r) for r in rows if r[0] not in skip][: count - capacity]

    def due(
        self,
        now: float,
        limit: int,
        exclude: set[int],
        busy: set[str] | None = None,
        full: set[tuple[str, str]] | None = None,
    ) -> list[Row]:
        """Rows to send now, at most one per order key: the oldest pending one, and only while no
        other row of that key is in flight (``busy``) — a resolve never overtakes its trigger.
        Channels in ``full`` (as many sends in flight as they may have) are skipped."""
        held = sorted(full or ())
        skip = (
            " AND (namespace, channel) NOT IN (VALUES " + ",".join("(?, ?)" for _ in held) + ")" if held else ""
        )
        rows = self.db.execute(
            f"SELECT {_ROW} FROM outbox AS o"
            " WHERE status = 'pending' AND next_at <= ?"
            " AND NOT EXISTS (SELECT 1 FROM outbox AS p"
            "   WHERE p.okey = o.okey AND p.status = 'pending' AND p.id < o.id)"
            f"{skip} ORDER BY next_at, id LIMIT ?",
            (now, *(v for pair in held for v in pair), limit + len(exclude)),
        ).fetchall()
        taken = set(busy or ())
        out = []
        for r in rows:
            if r[0] in exclude or r[9] in taken:
                continue
            taken.add(r[9])
            out.append(_row(r))
            if len(out) == limit:
                break
        return out

    def next_due(self, after: float | None = None) -> float | None:
        """When the next pending row falls due (after ``after``: rows due already wait for a slot)."""
        row = self.db.execute(
            "SELECT MIN(next_at) FROM outbox WHERE status = 'pending' AND next_at > ?",
            (float("-inf") if after is None else after,),
        ).fetchone()
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

    def due_now(self, ids: Iterable[int], now: float) -> None:
        """Make these rows (if still pending) due at ``now``."""
        for row_id in ids:
            self.db.execute("UPDATE outbox SET next_at = ? WHERE id = ? AND status = 'pending'", (now, row_id))

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())

    def pending_by_channel(self) -> dict[tuple[str, str], tuple[int, float]]:
        """(namespace, channel) → (pending rows, when the oldest was queued)."""
        rows = self.db.execute(
            "SELECT namespace, channel, COUNT(*), MIN(created) FROM outbox WHERE status = 'pending'"
            " GROUP BY namespace, channel"
        ).fetchall()
        return {(r[0], r[1]): (int(r[2]), float(r[3])) for r in rows}

    def pending_of(self, namespace: str, channel: str) -> tuple[int, float | None]:
        count, oldest = self.db.execute(
            "SELECT COUNT(*), MIN(created) FROM outbox WHERE namespace = ? AND channel = ? AND status = 'pending'",
            (namespace, channel),
        ).fetchone()
        return int(count), (float(oldest) if oldest is not None else None)

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
