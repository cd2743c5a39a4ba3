"""klaxon.api."""
