"""Dativo: config-driven data ingestion with pluggable readers and writers."""

__version__ = "0.1.0"
