"""S3-compatible object storage: one settings model and one file-system factory for every writer.

The same :class:`S3Settings` block appears under ``target.catalog.s3`` (Iceberg) and, later, under the
parquet writer's target. Credentials are :class:`pydantic.SecretStr`: they never show in ``repr``, logs
or error messages; :func:`redact` scrubs them from text that came back from a lower layer.

Without ``access_key_id``, the AWS default chain applies (environment, profile, instance role).
"""

from __future__ import annotations

from urllib.parse import urlparse

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class S3Settings(BaseModel):
    """How to reach an S3-compatible object store (AWS S3, SeaweedFS, MinIO, Ceph …)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(
        default=None,
        description="Endpoint URL, e.g. 'http://127.0.0.1:8333'; omit for AWS S3. "
        "A URL without a scheme is taken as https.",
    )
    region: str = Field(
        default="us-east-1",
        description="Signing region. Always sent, so no request goes out to discover a bucket's region.",
    )
    access_key_id: SecretStr | None = Field(
        default=None, description="Access key id; omit to use the AWS default credential chain."
    )
    secret_access_key: SecretStr | None = Field(default=None, description="Secret access key.")
    session_token: SecretStr | None = Field(
        default=None, description="Session token of temporary credentials."
    )
    path_style: bool = Field(
        default=False,
        description="Address buckets as 'endpoint/bucket/key' instead of 'bucket.endpoint/key'; "
        "most self-hosted servers need this.",
    )
    connect_timeout: float | None = Field(default=None, gt=0, description="Connect timeout in seconds.")
    request_timeout: float | None = Field(default=None, gt=0, description="Request timeout in seconds.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint_has_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value if "://" in value else f"https://{value}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"expected a URL like 'http://host:port', got {value!r}")
        return value.rstrip("/")

    @property
    def scheme(self) -> str:
        """``http`` or ``https``."""
        if self.endpoint is None:
            return "https"
        return urlparse(self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}").scheme

    @property
    def host(self) -> str | None:
        """``host:port`` of the endpoint, or ``None`` for AWS S3."""
        if self.endpoint is None:
            return None
        return urlparse(self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}").netloc

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint with its scheme, as most clients want it."""
        return f"{self.scheme}://{self.host}" if self.endpoint else None

    def secrets(self) -> list[str]:
        """The secret values, for :func:`redact`."""
        return [
            s.get_secret_value()
            for s in (self.access_key_id, self.secret_access_key, self.session_token)
            if s
        ]

    def describe(self) -> str:
        """A one-line description that is safe to log: endpoint and region, never credentials."""
        return f"S3 endpoint {self.endpoint_url or 'AWS'}, region {self.region}"


def s3_filesystem(settings: S3Settings, *, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
    """Build a ``pyarrow.fs.S3FileSystem`` from ``settings``.

    Args:
        settings: Endpoint, region and credentials.
        allow_bucket_creation: Let ``create_dir("bucket")`` create buckets (off by default).

    Returns:
        A file system whose paths are ``bucket/key`` (no ``s3://`` prefix).
    """
    kwargs: dict[str, object] = {
        "region": settings.region,
        "scheme": settings.scheme,
        "force_virtual_addressing": not settings.path_style and settings.endpoint is None,
        "allow_bucket_creation": allow_bucket_creation,
    }
    if settings.host:
        kwargs["endpoint_override"] = settings.host
    if settings.access_key_id is not None:
        kwargs["access_key"] = settings.access_key_id.get_secret_value()
        kwargs["secret_key"] = (
            settings.secret_access_key.get_secret_value() if settings.secret_access_key else ""
        )
        if settings.session_token is not None:
            kwargs["session_token"] = settings.session_token.get_secret_value()
    if settings.connect_timeout is not None:
        kwargs["connect_timeout"] = settings.connect_timeout
    if settings.request_timeout is not None:
        kwargs["request_timeout"] = settings.request_timeout
    return pafs.S3FileSystem(**kwargs)


def redact(text: str, secrets: list[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``***``."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


__all__ = ["S3Settings", "redact", "s3_filesystem"]
