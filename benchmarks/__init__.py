"""Benchmarks of nextbest: load generation and the baselines it is measured against."""
