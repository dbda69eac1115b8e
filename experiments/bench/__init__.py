"""Benchmarks: ``python -m experiments.bench.<name>``; each prints a table, then one JSON line."""
