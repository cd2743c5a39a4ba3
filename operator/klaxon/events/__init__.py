"""Event rules (SEMANTICS §6, seeds 001 and 004): live detection events in, notifications out.

- ``model``: the event (``EventIn``, the strict ``POST /v1/events`` schema; mappings with aliases
  for ``klaxon test-rule``).
- ``match``: the one event filter (``EventMatcher``) and the rule index that narrows candidates.
- ``grouping`` and ``pipeline``: per rule, dedup key, grouping, gates and cooldown
  (``EventPipeline``; ``run_test_rule`` feeds stored events through it).
- ``entries``: alert entries people acknowledge and tag; ``state``: all of it across restarts.
- ``service`` (``EventService``: queue, matching worker, status, ``set_config``), ``http``
  (``POST /v1/events``) and ``metrics``.

The notification policy (gates, cooldown, dedup keys) and delivery are ``klaxon.notify``'s; the
evaluator wires a service to Kubernetes (``klaxon.evaluator.ingest``).
"""

from .match import CONDITION_ORDER, EventMatcher, match_event
from .model import EventIn
from .pipeline import EventPipeline, EventResult, TestReport, run_test_rule

__all__ = [
    "CONDITION_ORDER",
    "EventIn",
    "EventMatcher",
    "EventPipeline",
    "EventResult",
    "TestReport",
    "match_event",
    "run_test_rule",
]
