"""The event rules' working state on disk, so an evaluator restart neither re-opens alerts nor forgets
entries: per rule the grouping windows, the cooldown per dedup key, acknowledged episodes and the
alert entries (with the people's records already applied).

One JSON file in the evaluator's ``--state-dir`` (``events-state.json``), written atomically
(temporary file + rename) every few seconds while events arrive and when the evaluator stops; a
crash loses at most that interval. The Notifier's own per-key state (cooldown, ack) is in its
SQLite outbox and survives independently. Grouping and cooldown state is kept only while the
rule's spec and the AlertConfig's grouping are unchanged (a changed rule starts grouping afresh,
as it does without a restart); entries are kept either way. An unreadable file is logged and
ignored: the evaluator starts empty rather than not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec

from .entries import Entry, Record, RuleEntries
from .pipeline import EventPipeline

log = logging.getLogger("klaxon.events")

STATE_FILE = "events-state.json"
VERSION = 1


def fingerprint(spec: AlertRuleSpec, config: AlertConfigSpec | None) -> str:
    """What grouping and cooldown state depends on: the rule's spec and the config's grouping."""
    grouping = (config or AlertConfigSpec()).grouping
    text = json.dumps(
        [spec.model_dump(mode="json"), grouping.model_dump(mode="json")], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _t(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _record(r: Record | None) -> dict[str, Any] | None:
    return None if r is None else {"key": r.key, "what": r.what, "by": r.by, "at": r.at.isoformat(), "text": r.text}


def _unrecord(d: dict[str, Any] | None) -> Record | None:
    if d is None:
        return None
    return Record(d["key"], d["what"], d["by"], datetime.fromisoformat(d["at"]), d.get("text"))


def dump_rule(pipeline: EventPipeline, entries: RuleEntries) -> dict[str, Any]:
    groups = {
        k: {"times": [t.isoformat() for t in g.times], "open": g.open, "last": _t(g.last_event), "episode": g.episode}
        for k, g in pipeline._grouper.groups.items()
    }
    return {
        "fingerprint": fingerprint(pipeline.rule, pipeline.config),
        "groups": groups,
        "cooldown": {k: t.isoformat() for k, t in pipeline._cooldown.items()},
        "acked": sorted(pipeline.acked),
        "entries": {
            "open": {
                k: {
                    "episode": e.episode,
                    "first": e.first.isoformat(),
                    "last": e.last.isoformat(),
                    "count": e.count,
                    "state": e.state,
                    "acknowledgedBy": e.acknowledged_by,
                    "acknowledgedAt": _t(e.acknowledged_at),
                    "action": _record(e.action),
                    "rootCause": _record(e.root_cause),
                    "notifications": e.notifications,
                }
                for k, e in entries.open.items()
            },
            "closed": entries.closed,
            "seen": [_record(r) for r in sorted(entries._seen, key=lambda r: (r.key, r.what, r.at))],
            "watermark": _t(entries.watermark),
        },
    }


def restore_rule(pipeline: EventPipeline, entries: RuleEntries, data: dict[str, Any]) -> bool:
    """Put saved state back; grouping/cooldown only when the fingerprint matches. True when it did."""
    saved = data.get("entries") or {}
    for k, e in (saved.get("open") or {}).items():
        entries.open[k] = Entry(
            key=k,
            episode=e["episode"],
            first=datetime.fromisoformat(e["first"]),
            last=datetime.fromisoformat(e["last"]),
            count=int(e["count"]),
            state=e["state"],
            acknowledged_by=e.get("acknowledgedBy"),
            acknowledged_at=_dt(e.get("acknowledgedAt")),
            action=_unrecord(e.get("action")),
            root_cause=_unrecord(e.get("rootCause")),
            notifications=int(e.get("notifications") or 0),
        )
    entries.closed = int(saved.get("closed") or 0)
    entries._seen = {r for r in (_unrecord(d) for d in saved.get("seen") or []) if r is not None}
    entries.watermark = _dt(saved.get("watermark"))
    pipeline.acked |= set(data.get("acked") or [])
    if data.get("fingerprint") != fingerprint(pipeline.rule, pipeline.config):
        return False
    for k, g in (data.get("groups") or {}).items():
        times = [datetime.fromisoformat(t) for t in g["times"]]
        pipeline._grouper.restore(k, times, bool(g["open"]), _dt(g.get("last")), str(g.get("episode") or ""))
    pipeline._cooldown.update({k: datetime.fromisoformat(t) for k, t in (data.get("cooldown") or {}).items()})
    return True


def encode_rule(name: str, state: dict[str, Any]) -> str:
    """One rule's part of the file, ``"ns/name":{...}`` (encoded on its own, so a caller can yield
    to its event loop between rules)."""
    return json.dumps(name) + ":" + json.dumps(state, separators=(",", ":"))


_WRITING = threading.Lock()  # one writer at a time: the periodic save (a thread) and the final one


def write(path: Path, encoded: list[str]) -> None:
    """Write atomically: readers (the next start) see the old file or the new one, never half.
    Writes are serialised, so the last one started is the one that stays."""
    with _WRITING:
        _write(path, encoded)


def _write(path: Path, encoded: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f'{{"version":{VERSION},"rules":{{')
        f.write(",".join(encoded))
        f.write("}}")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict[str, dict[str, Any]]:
    """The saved rules by ``namespace/name``; empty when there is no usable file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("event state %s unreadable (%s): starting without it", path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("rules"), dict):
        log.warning("event state %s has an unknown format: starting without it", path)
        return {}
    return dict(data["rules"])
