"""klaxon.evaluator: query Prometheus, run the engine per series, write status, hand over notifications."""

from klaxon.api.sharding import assigned, parse_shard, shard_of
from klaxon.evaluator.core import (
    CycleResult,
    Evaluator,
    LogNotifier,
    Notification,
    Notifier,
    RuleRef,
    RuleResult,
    build_status,
    restore_states,
    series_key,
)
from klaxon.evaluator.status import StatusWriter, significant

__all__ = [
    "CycleResult",
    "Evaluator",
    "LogNotifier",
    "Notification",
    "Notifier",
    "RuleRef",
    "RuleResult",
    "StatusWriter",
    "assigned",
    "build_status",
    "parse_shard",
    "restore_states",
    "series_key",
    "shard_of",
    "significant",
]
