"""``klaxon entries`` against the emulated Kubernetes API, and the evaluator applying what it wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from klaxon.api.alertconfig import AlertConfigSpec
from klaxon.api.alertrule import AlertRuleSpec
from klaxon.cli.entries import run_with
from klaxon.cli.main import build_parser
from klaxon.events.entries import ENTRIES_ANNOTATION, Record, RuleEntries, parse_entries_annotation
from klaxon.events.model import EventIn
from klaxon.kube.client import KubeClient
from support.events import event, load_example, make_service

AR = "klaxon.dev/v1alpha1/alertrules"
AC = "klaxon.dev/v1alpha1/alertconfigs"
NS = "site"


def seed(kube: Any) -> tuple[AlertRuleSpec, AlertConfigSpec]:
    rules, cfg = load_example("14-alertconfig-events.yaml")
    assert cfg is not None
    name, spec = rules[0]
    kube.create_object(
        AC,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertConfig",
            "metadata": {"name": "site-security"},
            "spec": cfg.model_dump(mode="json", by_alias=True, exclude_none=True),
        },
        namespace=NS,
    )
    status = {
        "entriesCount": 1,
        "entries": [
            {
                "key": "cam1|perimeter-north",
                "state": "Open",
                "eventCount": 3,
                "firstEventTime": "2025-01-18T12:00:00Z",
                "lastEventTime": "2025-01-18T12:01:00Z",
            }
        ],
    }
    kube.create_object(
        AR,
        {
            "apiVersion": "klaxon.dev/v1alpha1",
            "kind": "AlertRule",
            "metadata": {"name": name},
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "status": status,
        },
        namespace=NS,
        keep_status=True,
    )
    return spec, cfg


async def cli(kube_api: Any, *argv: str) -> int:
    return await run_with(build_parser().parse_args(["entries", *argv]), KubeClient(kube_api))


async def test_list_ack_and_tag_through_the_annotation(
    kube: Any, kube_api: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """One user session end to end (list, ack, tag, refusals, list again): long because each step
    reads what the one before wrote."""
    spec, cfg = seed(kube)
    assert await cli(kube_api, "list", "-A") == 0
    out = capsys.readouterr().out
    assert "perimeter-intrusion" in out and "cam1|perimeter-north" in out and "Open" in out

    assert await cli(kube_api, "ack", "perimeter-intrusion", "cam1|perimeter-north", "--by", "alice", "-n", NS) == 0
    assert (
        await cli(
            kube_api,
            "tag",
            "perimeter-intrusion",
            "cam1|perimeter-north",
            "--root-cause",
            "Animal",
            "--by",
            "bob",
            "-n",
            NS,
        )
        == 0
    )
    capsys.readouterr()
    # not a preset action and allowCustomAction is false; an unknown entry; ack of a missing rule key
    assert (
        await cli(kube_api, "tag", "perimeter-intrusion", "cam1|perimeter-north", "--action", "Called mum", "-n", NS)
        == 2
    )
    assert "not a preset tag" in capsys.readouterr().err
    assert await cli(kube_api, "ack", "perimeter-intrusion", "nope", "-n", NS) == 1

    obj = kube.get_object(AR, "perimeter-intrusion", NS)
    value = obj["metadata"]["annotations"][ENTRIES_ANNOTATION]
    records, problems = parse_entries_annotation(value)
    assert problems == []
    got = {(r.what, r.by, r.text) for r in records}
    assert got == {("ack", "alice", None), ("rootCause", "bob", "Animal")}
    assert all(abs((datetime.now(UTC) - r.at).total_seconds()) < 120 for r in records)

    assert await cli(kube_api, "list", "perimeter-intrusion", "-n", NS, "-o", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["records"]["ack"]["by"] == "alice" and rows[0]["records"]["rootCause"]["text"] == "Animal"

    # the evaluator applies what the CLI wrote: the open entry becomes Acknowledged by alice
    service, _ = make_service(cfg)
    service.set_rule(NS, "perimeter-intrusion", spec)
    t0 = datetime(2025, 1, 18, 12, 0, tzinfo=UTC)
    batch = [
        EventIn.model_validate_json(
            json.dumps(
                event(
                    i, t0 + timedelta(seconds=30 * i), camera_id="cam1", zone_ids=["perimeter-north"], risk_score=80.0
                )
            )
        )
        for i in range(3)
    ]
    await service.process(batch)
    service.set_rule(NS, "perimeter-intrusion", spec, obj["metadata"]["annotations"])
    entry = service.entries_status(NS, "perimeter-intrusion")["entries"][0]
    assert (entry["state"], entry["acknowledgedBy"], entry["rootCause"]) == ("Acknowledged", "alice", "Animal")


def test_ack_mechanisms_and_preset_tags() -> None:
    _, cfg = load_example("14-alertconfig-events.yaml")
    assert cfg is not None  # ackMechanisms: button, setRootCause; allowCustomAction: false
    entries = RuleEntries(120, cfg.entries)
    from klaxon.events.pipeline import EventResult

    t = datetime(2025, 1, 1, tzinfo=UTC)
    for key in ("a", "b", "c"):
        entries.observe(EventResult("1", t, True, [], key, True, None, key, None, f"{key}@t", True, 3, t))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    acked, problems = entries.apply(
        [
            Record("a", "action", "x", at, "Security dispatched"),  # preset, but 'act' does not ack here
            Record("b", "action", "x", at, "Free text"),  # not preset, custom actions off
            Record("c", "rootCause", "y", at, "Staff after hours"),  # setRootCause acks
            Record("gone", "ack", "z", at),  # no open entry: void
        ]
    )
    assert acked == {"c@t"}
    assert len(problems) == 1 and "Free text" in problems[0]
    st = {e["key"]: e for e in entries.status()["entries"]}
    assert st["a"]["state"] == "Open" and st["a"]["action"] == "Security dispatched"
    assert st["b"].get("action") is None and st["c"]["state"] == "Acknowledged"
    assert entries.apply([Record("c", "rootCause", "y", at, "Staff after hours")]) == (set(), [])  # seen once
