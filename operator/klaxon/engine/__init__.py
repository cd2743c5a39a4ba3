"""Pure evaluation engine: thresholds, baselines, levels, counting and the state machine.

Shared by the evaluator and `klaxon preview` (SEMANTICS.md §1, §3-§5, §7). Imports only the
standard library and numpy.
"""

from klaxon.engine.replay import (
    default_warmup,
    eval_grid,
    grid_offset,
    replay,
    replay_composite,
    replay_grid,
    replay_many,
)
from klaxon.engine.schedule import in_schedule, in_schedule_array
from klaxon.engine.state import disable, evaluation_reason, rule_state, step, step_flags
from klaxon.engine.thresholds import (
    Bounds,
    PointBounds,
    aggregate_windows,
    compute_bounds,
    point_violations,
    violation_arrays,
)
from klaxon.engine.types import (
    CompositeReplayResult,
    DynamicSpec,
    EngineRule,
    LevelSpec,
    PointResult,
    Points,
    RecoverySpec,
    ReplayResult,
    ReplaySummary,
    Schedule,
    ScheduleWindow,
    SeriesState,
    Transition,
)
from klaxon.engine.validate import validate_rule

__all__ = [
    "Bounds",
    "CompositeReplayResult",
    "DynamicSpec",
    "EngineRule",
    "LevelSpec",
    "PointBounds",
    "PointResult",
    "Points",
    "RecoverySpec",
    "ReplayResult",
    "ReplaySummary",
    "Schedule",
    "ScheduleWindow",
    "SeriesState",
    "Transition",
    "aggregate_windows",
    "compute_bounds",
    "default_warmup",
    "disable",
    "eval_grid",
    "evaluation_reason",
    "grid_offset",
    "in_schedule",
    "in_schedule_array",
    "point_violations",
    "replay",
    "replay_composite",
    "replay_grid",
    "replay_many",
    "rule_state",
    "step",
    "step_flags",
    "validate_rule",
    "violation_arrays",
]
