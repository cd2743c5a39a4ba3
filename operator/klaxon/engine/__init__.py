"""klaxon.engine."""
