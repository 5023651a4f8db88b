"""Where a writer's files live: the options every file writer shares, and the store they open."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dativo.names import check_name
from dativo.storage.local import LocalStore, target_problem
from dativo.storage.objectstore import S3Store
from dativo.storage.s3 import S3Settings
from dativo.storage.store import Store

MAX_S3_FILE_MB = 4096
"""Largest data file on S3: a committed file is published by server-side copy, at most 5 GiB per object."""


def open_store(
    path: str,
    s3: S3Settings | Mapping[str, Any] | None = None,
    *,
    logger: logging.Logger | None = None,
    label: str = "path",
) -> Store:
    """The store of one dataset's folder.

    Args:
        path: A local folder, a ``file://`` URL or ``s3://bucket/prefix`` (no ``{dataset}`` placeholder).
        s3: Endpoint and credentials of an ``s3://`` path (:class:`S3Settings` or its dict; default: the AWS
            default chain).
        logger: Where the store's warnings go.
        label: How messages name the option that chose the folder.

    Returns:
        A :class:`~dativo.storage.local.LocalStore` or an :class:`~dativo.storage.objectstore.S3Store`.

    Raises:
        ValueError: ``path`` has a placeholder or cannot be a target (the file system's root, the home
            folder …; see :func:`~dativo.storage.local.target_problem`), or ``s3`` settings come with a local
            path.
    """
    if "{dataset}" in path:
        raise ValueError(f"path {path!r}: replace {{dataset}} with the dataset's name")
    if path.startswith("s3://"):
        settings = s3 if isinstance(s3, S3Settings) else S3Settings.model_validate(dict(s3 or {}))
        return S3Store(path, settings, logger=logger, label=label)
    if s3 is not None:
        raise ValueError("s3 settings need an s3:// path")
    return LocalStore(path, logger=logger, label=label)


class StoreOptions(BaseModel):
    """The options of a writer of files, local or on S3; subclass it to add the writer's own."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description="Target folder, local or 's3://bucket/prefix'; `{dataset}` is replaced by the dataset "
        "name."
    )
    s3: S3Settings | None = Field(
        None,
        description="How to reach the object store of an s3:// path (endpoint, credentials, region …).",
    )
    target_file_size_mb: int = Field(256, ge=1, description="Start a new file past this size.")

    @field_validator("path")
    @classmethod
    def _path_can_be_a_target(cls, value: str) -> str:
        local = value.removeprefix("file://")
        if "://" not in local:
            problem = target_problem(local.replace("{dataset}", "dataset"))
            if problem is not None:
                raise ValueError(f"{value!r} cannot be a target: {problem}")
        return value

    @model_validator(mode="after")
    def _storage_fits_path(self) -> StoreOptions:
        scheme = self.path.split("://", 1)[0] if "://" in self.path else ""
        if scheme not in ("", "file", "s3"):
            raise ValueError(f"path {self.path!r}: expected a local folder, a file:// URL or an s3:// URL")
        if scheme == "s3":
            if not self.path[len("s3://") :].split("/", 1)[0]:
                raise ValueError(f"path {self.path!r} names no bucket; write s3://bucket/prefix")
            if self.target_file_size_mb > MAX_S3_FILE_MB:
                raise ValueError(
                    f"target_file_size_mb must be at most {MAX_S3_FILE_MB} on S3: committed files are "
                    "published by server-side copy, which is limited to 5 GiB per object"
                )
        elif self.s3 is not None:
            raise ValueError("s3 settings need an s3:// path")
        return self

    def store(self, dataset: str, *, logger: logging.Logger | None = None, label: str = "path") -> Store:
        """The store of one dataset.

        Args:
            dataset: The dataset's name; it replaces ``{dataset}`` in :attr:`path`.
            logger: Where the store's warnings go.
            label: How messages name the path option.

        Raises:
            UnsafeName: ``{dataset}`` would be replaced by a name that could leave the folder.
            ValueError: The folder cannot be a target.
        """
        name = check_name(dataset, "dataset name") if "{dataset}" in self.path else dataset
        return open_store(self.path.replace("{dataset}", name), self.s3, logger=logger, label=label)


__all__ = ["MAX_S3_FILE_MB", "StoreOptions", "open_store"]
