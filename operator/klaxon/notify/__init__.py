"""klaxon.notify."""
