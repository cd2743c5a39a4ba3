"""klaxon.evaluator."""
