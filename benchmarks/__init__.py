"""Benchmarks run by ``make bench``: each script measures the project and its baseline in
one run and appends the table to ``docs/benchmarks.md``."""
