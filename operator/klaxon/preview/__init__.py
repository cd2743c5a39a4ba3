"""`klaxon preview`: data loading, replay orchestration, plotting and the JSON output schema."""
