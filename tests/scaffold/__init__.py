"""Tests of ``dativo plugin new`` and ``dativo sdk path`` (src/dativo/scaffold)."""
