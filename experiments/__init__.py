"""Runnable experiments: the generic entry point, configs and benchmarks."""
