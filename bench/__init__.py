"""Benchmarks, run by `make bench`: each prints its figures and a ratio against a baseline in the same run."""
