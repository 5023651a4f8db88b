"""The Go PostgreSQL reader (a Flight plugin process), offered to Dativo under the entry point ``go_postgres``."""

from pathlib import Path

from dativo.plugins.process import executable

reader = executable(Path(__file__).parent / "bin" / "go_postgres")
