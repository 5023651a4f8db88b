"""Benchmarks: ``make bench`` (see bench/README.md). Never part of the test suite's pass/fail."""
