"""Alert entries of event rules (seed 004): what people see, acknowledge and tag.

An entry is one alert of an event rule: it opens when its group reaches ``minEvents`` in the
AlertConfig's grouping window, absorbs later matches, and closes after a full window without
events (event time). Entries live in the evaluator (saved in its state dir across restarts,
``state``) and are written to ``AlertRule.status.entries`` (open ones, capped at 50) and
``status.entriesCount`` (all open).

People act on entries through one annotation on the AlertRule, ``klaxon.dev/entries``, a JSON
object keyed by entry key (``klaxon entries ack|tag`` writes it)::

    {"perimeter-north": {"ack":       {"by": "alice", "at": "2026-11-22T23:01:00Z"},
                         "action":    {"text": "Security dispatched", "by": "bob", "at": "..."},
                         "rootCause": {"text": "Animal", "by": "bob", "at": "..."}}}

A record applies to the entry open for its key when the evaluator first sees the record, and
to no later entry of that key (acknowledgement is for the current episode only); a record that
finds no open entry is void. Which records acknowledge follows ``spec.entries.ackMechanisms``:
``button`` → ``ack``, ``act`` → ``action``, ``setRootCause`` → ``rootCause``. Tags must be
preset tags of their category unless ``allowCustomAction`` / ``allowCustomRootCause``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from klaxon.api.alertconfig import Entries
from klaxon.api.alertrule_status import AlertEntry

from .pipeline import EventResult

ENTRIES_ANNOTATION = "klaxon.dev/entries"
MAX_STATUS_ENTRIES = 50
Action = Literal["ack", "action", "rootCause"]
ACTIONS: tuple[Action, ...] = ("ack", "action", "rootCause")
_MECHANISM: dict[Action, str] = {"ack": "button", "action": "act", "rootCause": "setRootCause"}


@dataclass(frozen=True)
class Record:
    """One person's ack or tag of an entry: what, who, when (and the tag's text)."""

    key: str
    what: Action
    by: str
    at: datetime
    text: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"by": self.by, "at": self.at.isoformat().replace("+00:00", "Z")}
        if self.text is not None:
            out = {"text": self.text, **out}
        return out


def parse_entries_annotation(value: str | None) -> tuple[list[Record], list[str]]:
    """The records of a ``klaxon.dev/entries`` value, and what was wrong with it (skipped)."""
    if not value or not value.strip():
        return [], []
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        return [], [f"{ENTRIES_ANNOTATION}: not JSON ({exc.msg})"]
    if not isinstance(data, dict):
        return [], [f"{ENTRIES_ANNOTATION}: must be a JSON object keyed by entry key"]
    records: list[Record] = []
    problems: list[str] = []
    for key, per_key in data.items():
        if not isinstance(per_key, dict):
            problems.append(f"{ENTRIES_ANNOTATION}[{key}]: must be an object with ack/action/rootCause")
            continue
        for what, rec in per_key.items():
            where = f"{ENTRIES_ANNOTATION}[{key}].{what}"
            if what not in ACTIONS:
                problems.append(f"{where}: unknown (allowed: {', '.join(ACTIONS)})")
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("by"), str) or not rec["by"]:
                problems.append(f"{where}: needs a non-empty 'by'")
                continue
            try:
                at = datetime.fromisoformat(str(rec.get("at", "")).replace("Z", "+00:00"))
            except ValueError:
                problems.append(f"{where}: 'at' must be an RFC 3339 time")
                continue
            text = rec.get("text")
            if what != "ack" and (not isinstance(text, str) or not text.strip()):
                problems.append(f"{where}: needs a non-empty 'text'")
                continue
            records.append(Record(str(key), what, rec["by"], at if at.tzinfo else at.replace(tzinfo=UTC), text))
    return records, problems


def set_record(value: str | None, record: Record) -> str:
    """The annotation value with ``record`` set (replacing the same key's record of that kind)."""
    data: dict[str, Any] = {}
    if value and value.strip():
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError:
            loaded = {}
        if isinstance(loaded, dict):
            data = loaded
    per_key = data.get(record.key)
    if not isinstance(per_key, dict):
        per_key = {}
    per_key[record.what] = record.to_json()
    data[record.key] = per_key
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def tag_problem(settings: Entries, what: Action, text: str | None) -> str | None:
    """Why a tag is not allowed by the AlertConfig's ``entries`` settings, if it is not."""
    if what == "ack":
        return None
    category = "action" if what == "action" else "rootCause"
    custom = settings.allow_custom_action if what == "action" else settings.allow_custom_root_cause
    preset = [t.text for t in settings.preset_tags if t.category == category]
    if custom or text in preset:
        return None
    return f"{category} {text!r} is not a preset tag (allowed: {', '.join(preset) or 'none'})"


@dataclass
class Entry:
    key: str
    episode: str
    first: datetime
    last: datetime
    count: int
    state: Literal["Open", "Acknowledged", "Closed"] = "Open"
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    action: Record | None = None
    root_cause: Record | None = None
    notifications: int = 0

    def to_status(self) -> dict[str, Any]:
        model = AlertEntry(
            key=self.key,
            state=self.state,
            first_event_time=self.first,
            last_event_time=self.last,
            event_count=self.count,
            acknowledged_by=self.acknowledged_by,
            action=self.action.text if self.action else None,
            root_cause=self.root_cause.text if self.root_cause else None,
        )
        out: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        return out


@dataclass
class RuleEntries:
    """The entries of one event rule."""

    window_s: float
    settings: Entries = field(default_factory=Entries)
    open: dict[str, Entry] = field(default_factory=dict)
    closed: int = 0
    _seen: set[Record] = field(default_factory=set)
    watermark: datetime | None = None

    def observe(self, r: EventResult) -> bool:
        """Account one matched event; True when the entries changed."""
        if not r.matched or not r.episode or r.group is None:
            return False
        if self.watermark is None or r.time > self.watermark:
            self.watermark = r.time
        e = self.open.get(r.group)
        if e is None or e.episode != r.episode:
            if e is not None:
                self.closed += 1
            first = (r.group_first or r.time) if r.opened else r.time
            e = Entry(r.group, r.episode, first, r.time, r.group_count if r.opened else 1)
            self.open[r.group] = e
        else:
            e.count += 1
            e.first, e.last = min(e.first, r.time), max(e.last, r.time)
        if r.would_notify:
            e.notifications += 1
        return True

    def sweep(self, now: datetime | None = None) -> bool:
        """Close entries quiet for a full window before ``now`` (default: the latest event time)."""
        now = now or self.watermark
        if now is None:
            return False
        quiet = timedelta(seconds=self.window_s)
        done = [k for k, e in self.open.items() if now - e.last >= quiet]
        for k in done:
            del self.open[k]
        self.closed += len(done)
        return bool(done)

    def apply(self, records: list[Record]) -> tuple[set[str], list[str]]:
        """Apply records not seen before: acked episodes, and problems (records ignored)."""
        acked: set[str] = set()
        problems: list[str] = []
        for rec in records:
            if rec in self._seen:
                continue
            self._seen.add(rec)
            e = self.open.get(rec.key)
            if e is None:
                continue  # void: no open entry for that key when the record came
            problem = tag_problem(self.settings, rec.what, rec.text)
            if problem is None and rec.what == "ack" and "button" not in self.settings.ack_mechanisms:
                problem = "acknowledging by button is not enabled (spec.entries.ackMechanisms)"
            if problem is not None:
                problems.append(f"entry {rec.key}: {problem}")
                continue
            if rec.what == "action":
                e.action = rec
            elif rec.what == "rootCause":
                e.root_cause = rec
            if _MECHANISM[rec.what] in self.settings.ack_mechanisms and e.state == "Open":
                e.state, e.acknowledged_by, e.acknowledged_at = "Acknowledged", rec.by, rec.at
                acked.add(e.episode)
        return acked, problems

    def status(self) -> dict[str, Any]:
        """``entries`` (open ones, most recent first, at most 50) and ``entriesCount`` (all open)."""
        ordered = sorted(self.open.values(), key=lambda e: (e.last, e.key), reverse=True)
        return {
            "entries": [e.to_status() for e in ordered[:MAX_STATUS_ENTRIES]],
            "entriesCount": len(self.open),
        }


def records_for(annotations: Mapping[str, str] | None) -> tuple[list[Record], list[str]]:
    return parse_entries_annotation((annotations or {}).get(ENTRIES_ANNOTATION))
