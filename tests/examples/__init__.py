"""Tests of the example plugins under examples/plugins."""
