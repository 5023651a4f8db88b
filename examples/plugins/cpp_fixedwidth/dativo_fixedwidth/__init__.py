"""The fixed-width reader, a C++ library, offered to Dativo under the entry point ``fixedwidth``."""

from pathlib import Path

from dativo.plugins.native import library

reader = library(Path(__file__).with_name("libdativo_fixedwidth.so"))
