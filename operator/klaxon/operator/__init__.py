"""klaxon.operator."""
