"""`klaxon preview`: data loading, replay orchestration, plotting and the JSON output schema."""

#: Members of a split rule a preview replays by default, and at most (--series-limit).
SERIES_LIMIT_DEFAULT = 20
SERIES_LIMIT_MAX = 50
