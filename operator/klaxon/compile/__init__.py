"""klaxon.compile."""
