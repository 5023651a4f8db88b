"""The Go Parquet writer (a Flight plugin process), offered to Dativo under the entry point ``go_parquet``."""

from pathlib import Path

from dativo.plugins.process import executable

writer = executable(Path(__file__).parent / "bin" / "go_parquet_writer", role="writer")
