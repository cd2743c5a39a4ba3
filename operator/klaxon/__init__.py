"""Klaxon: alerting as Kubernetes custom resources."""

__version__ = "0.1.0"

GROUP = "klaxon.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
