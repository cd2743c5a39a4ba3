"""NotificationChannel → Ready when its spec is valid, every referenced Secret key exists and
deliveries do not fail (the evaluator reports that in ``status.queue``; Ready is then False with
reason DeliveryFailing, and the evaluator's own Events tell when that began and ended).

Only key *names* are ever looked at (the Secret index keeps nothing else); values are never read
into status, events or logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.channel import delivery_failing
from ..api.validation import parse_spec
from . import metrics
from .conditions import Cond
from .refs import channel_condition
from .rules import previous_status, write_status
from .runtime import Runtime

KIND = "NotificationChannel"


async def reconcile_channel(rt: Runtime, body: Mapping[str, Any], trigger: str = "handler") -> Cond:
    meta = body["metadata"]
    async with rt.lock((KIND, meta["namespace"], meta["name"])):
        with metrics.measure(KIND, trigger):
            before = previous_status(rt, body, KIND)
            _, problems = parse_spec(KIND, body.get("spec"))
            valid = Cond(
                "Valid",
                not problems,
                "InvalidSpec" if problems else "Valid",
                "; ".join(map(str, problems)) if problems else "the spec is valid",
            )
            ready = channel_condition(body, rt.view("klaxon_secret_keys"))
            failing = delivery_failing(body.get("status"))
            if ready.ok and failing is not None:
                ready = Cond("Ready", False, "DeliveryFailing", failing)
            old: Mapping[str, Any] = next((c for c in before.get("conditions") or [] if c.get("type") == "Ready"), {})
            # the evaluator posts its own Events for an outage's start and end: one each is enough
            quiet = "DeliveryFailing" in (ready.reason, old.get("reason")) and valid.ok
            await write_status(rt, KIND, body, before, [valid, ready], {}, events=not quiet)
            return ready
