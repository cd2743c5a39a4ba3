"""klaxon.evaluator: query Prometheus, run the engine per series, write status, hand over notifications."""

from klaxon.api.sharding import assigned, parse_shard, shard_of
from klaxon.evaluator.core import Evaluator
from klaxon.evaluator.results import (
    CycleResult,
    RuleRef,
    RuleResult,
    SeriesTransition,
    TransitionSink,
    build_status,
    restore_states,
    series_key,
)
from klaxon.evaluator.status import StatusWriter, significant

__all__ = [
    "CycleResult",
    "Evaluator",
    "RuleRef",
    "RuleResult",
    "SeriesTransition",
    "StatusWriter",
    "TransitionSink",
    "assigned",
    "build_status",
    "parse_shard",
    "restore_states",
    "series_key",
    "shard_of",
    "significant",
]
