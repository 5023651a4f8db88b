"""Parquet modular encryption (``pyarrow.parquet.encryption``) with the HSM as its KMS.

pyarrow makes fresh random data keys for every file (one for the footer, one per encrypted column) and
asks the :class:`HsmKmsClient` to wrap each with the master key named by the HSM key label. Single wrapping
(``double_wrapping=False``) sends every data key to the HSM, so no intermediate key-encryption key lives in
the host's memory across files. The wrapped keys are stored in the file's own metadata
(``internal_key_material``), so a file carries everything needed to decrypt it — except the HSM.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet.encryption as pe

from dativo_hsm.hsm import DecryptionFailed, Keyring

ALGORITHM = "AES_GCM_V1"  # GCM for pages and metadata: confidentiality and integrity


class HsmKmsClient(pe.KmsClient):
    """A pyarrow ``KmsClient`` whose master keys are keys of one HSM token (by label)."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__()
        self.keyring = keyring

    def _check_label(self, master_key_identifier: str) -> None:
        if master_key_identifier != self.keyring.settings.key_label:
            # The label stored in the file names another key: say so instead of a bare integrity failure.
            raise DecryptionFailed(
                f"the file's data keys are wrapped by HSM key '{master_key_identifier}', "
                f"not by '{self.keyring.settings.key_label}'",
                hint="Use the key label the data was written with.",
            )

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        """Wrap one data key in the HSM; pyarrow stores the result in the file's key metadata."""
        self._check_label(master_key_identifier)
        return base64.b64encode(self.keyring.wrap(bytes(key_bytes))).decode()

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        """Unwrap one data key in the HSM."""
        self._check_label(master_key_identifier)
        return self.keyring.unwrap(base64.b64decode(wrapped_key))


def _factory(keyring: Keyring) -> pe.CryptoFactory:
    return pe.CryptoFactory(lambda _config: HsmKmsClient(keyring))


def encryption_properties(
    keyring: Keyring, schema: pa.Schema, columns: list[str] | None, *, plaintext_footer: bool
) -> pe.FileEncryptionProperties:
    """Fresh encryption properties, hence fresh data keys: call once per file.

    Args:
        keyring: The HSM key that wraps the data keys.
        schema: The file's schema (``columns=None`` encrypts every column).
        columns: Top-level columns to encrypt; the footer is encrypted unless ``plaintext_footer``.
        plaintext_footer: Leave the footer readable (schema, row counts, statistics of plaintext columns).
    """
    label = keyring.settings.key_label
    config = pe.EncryptionConfiguration(
        footer_key=label,
        # uniform: every column (nested leaves included) under the footer's master key, each with its own
        # data key
        column_keys={label: list(columns)} if columns else None,
        uniform_encryption=columns is None or None,
        encryption_algorithm=ALGORITHM,
        plaintext_footer=plaintext_footer,
        double_wrapping=False,
        internal_key_material=True,
        data_key_length_bits=256,
        cache_lifetime=timedelta(minutes=10),
    )
    return _factory(keyring).file_encryption_properties(pe.KmsConnectionConfig(), config)


def decryption_properties(keyring: Keyring) -> pe.FileDecryptionProperties:
    """Properties that let pyarrow read files written by :func:`encryption_properties` with this key."""
    return _factory(keyring).file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration(cache_lifetime=timedelta(minutes=10))
    )


__all__ = ["ALGORITHM", "HsmKmsClient", "decryption_properties", "encryption_properties"]
