"""dativo-hsm: a Dativo writer that encrypts Parquet on the client, with keys wrapped by an HSM (PKCS#11).

Use it in a job as ``target.writer.implementation: hsm_encrypted``; read the data back with
:func:`read_encrypted` or ``dativo-hsm decrypt``.
"""

from dativo_hsm.hsm import DecryptionFailed, HsmSettings, Keyring
from dativo_hsm.read import committed_files, read_encrypted
from dativo_hsm.writer import HsmEncryptedWriter, HsmWriterConfig

__all__ = [
    "DecryptionFailed",
    "HsmEncryptedWriter",
    "HsmSettings",
    "HsmWriterConfig",
    "Keyring",
    "committed_files",
    "read_encrypted",
]
