"""klaxon.cli."""
