"""A Dativo reader of mainframe record files described by a COBOL copybook (entry point ``cobol``)."""

from dativo_cobol.copybook import Layout, parse_copybook
from dativo_cobol.reader import CobolReader

__all__ = ["CobolReader", "Layout", "parse_copybook"]
