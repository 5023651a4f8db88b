"""Tests of the plugin loaders in src/dativo/plugins."""
