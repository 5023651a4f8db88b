"""Reading encrypted data back: only with the HSM key that wrapped its data keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dativo.api import CommitRecord, S3Settings, open_store
from pydantic import SecretStr

from dativo_hsm.crypto import decryption_properties
from dativo_hsm.hsm import HsmSettings, Keyring


def committed_files(path: str, *, s3: S3Settings | Mapping[str, Any] | None = None) -> list[str]:
    """The data files of a target's committed runs, oldest run first (no HSM needed: names only)."""
    return open_store(path, s3).committed_files()


def read_encrypted(
    path: str,
    *,
    pkcs11_library: str,
    token_label: str,
    pin: str | SecretStr,
    key_label: str = "",
    s3: S3Settings | Mapping[str, Any] | None = None,
) -> pa.Table:
    """Decrypt and read every committed row of an ``hsm_encrypted`` target.

    Args:
        path: The dataset's folder: a local path or ``s3://bucket/prefix`` (no ``{dataset}`` placeholder).
        pkcs11_library: The HSM's PKCS#11 module.
        token_label: The token holding the key-encryption key.
        pin: The token's user PIN.
        key_label: The key-encryption key's label (files name it too; this only checks it matches).
        s3: Endpoint and credentials for an ``s3://`` path (:class:`dativo.api.S3Settings` or its dict).

    Returns:
        The rows of the live commits, oldest run first.

    Raises:
        dativo.errors.ConfigError: Library, token or key not found.
        dativo.errors.ConnectionFailed: The PIN was refused.
        dativo_hsm.DecryptionFailed: The files were encrypted under another key.
    """
    store = open_store(path, s3)
    live = store.live()
    settings = HsmSettings(pkcs11_library=pkcs11_library, token_label=token_label,
                           key_label=key_label or _key_label([record for record, _ in live]), pin=pin)
    tables = []
    with Keyring(settings, allow_extractable_key=True) as keyring:  # reading: any key that opens the files
        decryption = decryption_properties(keyring)
        for _, files in reversed(live):
            for file in files:
                with store.fs.open_input_file(file) as handle:
                    tables.append(pq.read_table(handle, decryption_properties=decryption))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables)


def _key_label(records: list[CommitRecord]) -> str:
    for record in records:
        label = record.extra.get("sealed", {}).get("key")
        if label:
            return str(label)
    return ""


__all__ = ["committed_files", "read_encrypted"]
