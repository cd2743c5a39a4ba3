"""klaxon.prom."""
