"""Dativo: config-driven data ingestion with pluggable readers and writers."""

__version__ = "0.1.0"

API_VERSION = "1.3.0"
"""Version of the plugin contract (:mod:`dativo.api` exports it); kept here so it is known without pyarrow."""


def version_line() -> str:
    """What ``dativo --version`` prints."""
    return f"dativo {__version__} (plugin API {API_VERSION})"
