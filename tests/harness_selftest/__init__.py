"""Tests of tests/kube_harness itself (a package so that ``tests/`` lands on sys.path)."""
