"""Loaders for implementations that are not Python classes: native libraries (:mod:`.native`) and more."""
