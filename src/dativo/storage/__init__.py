"""Object storage shared by writers: settings models and ``pyarrow.fs`` factories."""

from dativo.storage.s3 import S3Settings, redact, s3_filesystem

__all__ = ["S3Settings", "redact", "s3_filesystem"]
