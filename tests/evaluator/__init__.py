"""Evaluator tests (real Prometheus)."""
