"""klaxon.kube."""
