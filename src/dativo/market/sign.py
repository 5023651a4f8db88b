"""Publisher keys and signatures: ed25519 (the ``cryptography`` library), detached, over the canonical manifest.

- ``dativo plugin keygen`` writes a private key (PKCS#8 PEM, mode 0600) and its public key, one line:
  ``ed25519 <base64 of the 32 raw bytes> <comment>``.
- A signature, ``dativo-plugin.toml.sig``, is JSON: the algorithm, the signer's public key, the sha256 of the
  canonical manifest (:meth:`dativo.market.manifest.Manifest.canonical`) and the signature over those bytes.
- The trusted keys are public key lines in ``$XDG_CONFIG_HOME/dativo/trusted_keys`` (``~/.config/…``),
  plus any ``--trust FILE`` given to a command. A key is named ``ed25519:<base64>`` in locks and indexes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dativo.errors import ConfigError, PluginUntrusted
from dativo.market.manifest import Manifest

ALGORITHM = "ed25519"
SIGNATURE_SUFFIX = ".sig"
PRIVATE_KEY_FILE = "publisher.key"
PUBLIC_KEY_FILE = "publisher.pub"
TRUSTED_KEYS_FILE = "trusted_keys"


def config_dir() -> Path:
    """Dativo's folder in the user's configuration: ``$XDG_CONFIG_HOME/dativo`` (``~/.config/dativo``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dativo"


@dataclass(frozen=True)
class PublicKey:
    """A publisher's public key.

    Attributes:
        raw: The 32 bytes of the ed25519 key.
        comment: Who it is (free text from the key file).
    """

    raw: bytes
    comment: str = ""

    @property
    def id(self) -> str:
        """``ed25519:<base64>``: how locks, indexes and signatures name the key."""
        return f"{ALGORITHM}:{base64.b64encode(self.raw).decode()}"

    @property
    def fingerprint(self) -> str:
        """A short name for people: the first 16 hex digits of the key's sha256."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def line(self) -> str:
        """The key as a line of a ``.pub`` or ``trusted_keys`` file."""
        return f"{ALGORITHM} {base64.b64encode(self.raw).decode()} {self.comment}".rstrip()

    @classmethod
    def parse(cls, text: str, *, source: str = "key") -> PublicKey:
        """A key from ``ed25519 BASE64 [comment]`` or ``ed25519:BASE64``.

        Raises:
            ConfigError: It is neither.
        """
        text = text.strip()
        if text.startswith(f"{ALGORITHM}:"):
            encoded, comment = text.removeprefix(f"{ALGORITHM}:"), ""
        else:
            parts = text.split(None, 2)
            if len(parts) < 2 or parts[0] != ALGORITHM:
                raise ConfigError(
                    f"{source}: '{text[:60]}' is not an ed25519 public key line",
                    hint="A public key line reads `ed25519 <base64> <comment>`, as `dativo plugin keygen` writes.",
                )
            encoded, comment = parts[1], parts[2] if len(parts) > 2 else ""
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"{source}: the key is not 32 bytes of base64",
                              hint="Copy the whole line of the publisher's .pub file.")
        return cls(raw, comment.strip())

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)


def read_keys(path: Path) -> list[PublicKey]:
    """The public keys in a ``.pub`` or ``trusted_keys`` file (blank lines and ``#`` comments skipped).

    Raises:
        ConfigError: The file cannot be read, or a line is not a key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror or exc}", hint="Check the path.") from None
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            keys.append(PublicKey.parse(line, source=f"{path}:{number}"))
    return keys


def trusted_keys(extra: list[Path] | tuple[Path, ...] = ()) -> list[PublicKey]:
    """The user's trusted publisher keys (``trusted_keys`` in :func:`config_dir`) and those of ``extra`` files."""
    found: list[PublicKey] = []
    default = config_dir() / TRUSTED_KEYS_FILE
    for path in ([default] if default.is_file() else []) + list(extra):
        found += read_keys(path)
    return found


def trust(public: Path) -> tuple[PublicKey, Path]:
    """Add the keys of the ``.pub`` file ``public`` to the user's trusted keys (once each).

    Returns:
        The first key added, and the trusted keys file.
    """
    keys = read_keys(public)
    if not keys:
        raise ConfigError(f"{public} holds no public key", hint="Give the publisher's .pub file.")
    target = config_dir() / TRUSTED_KEYS_FILE
    known = {k.raw for k in (read_keys(target) if target.is_file() else [])}
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as out:
        for key in keys:
            if key.raw not in known:
                out.write(key.line() + "\n")
    return keys[0], target


# --- private keys ---------------------------------------------------------------------------------------------


def generate(folder: Path, comment: str, *, force: bool = False) -> tuple[Path, Path, PublicKey]:
    """Make a publisher key pair in ``folder``: ``publisher.key`` (0600) and ``publisher.pub``.

    Raises:
        ConfigError: A key is there already (and not ``force``).
    """
    private_path, public_path = folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE
    if private_path.exists() and not force:
        raise ConfigError(
            f"{private_path} exists already; a publisher key is not replaced by accident",
            hint="Keep it (users trust its public key), or pass --force to make a new one.",
        )
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.chmod(private_path, 0o600)
    public = PublicKey(key.public_key().public_bytes_raw(), comment)
    public_path.write_text(public.line() + "\n", encoding="utf-8")
    return private_path, public_path, public


def load_private(path: Path) -> Ed25519PrivateKey:
    """The ed25519 private key in ``path`` (PKCS#8 PEM).

    Raises:
        ConfigError: It cannot be read or is not an ed25519 private key.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read private key {path}: {exc.strerror or exc}",
                          hint="`dativo plugin keygen` makes one.") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}",
                          hint="`dativo plugin keygen` makes one.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an ed25519 key", hint="`dativo plugin keygen` makes one.")
    return key


# --- signatures -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """A detached signature over a manifest's canonical bytes."""

    key: PublicKey
    manifest_sha256: str
    value: bytes

    def to_json(self) -> str:
        return json.dumps({
            "format": 1,
            "algorithm": ALGORITHM,
            "key": self.key.id,
            "manifest_sha256": self.manifest_sha256,
            "signature": base64.b64encode(self.value).decode(),
        }, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "signature") -> Signature:
        """Read a ``.sig`` file.

        Raises:
            PluginUntrusted: It is not a signature Dativo can check.
        """
        try:
            data: Any = json.loads(text)
            if not isinstance(data, dict) or data.get("algorithm") != ALGORITHM:
                raise ValueError(f"algorithm {data.get('algorithm') if isinstance(data, dict) else None!r}")
            key = PublicKey.parse(str(data["key"]), source=source)
            value = base64.b64decode(str(data["signature"]), validate=True)
            return cls(key, str(data["manifest_sha256"]), value)
        except (ValueError, KeyError, TypeError, binascii.Error, ConfigError) as exc:
            raise PluginUntrusted(f"{source} is not an ed25519 signature Dativo can check ({exc})",
                                  hint="Ask the publisher for the package as `dativo plugin pack` wrote it.") from None


def sign(manifest: Manifest, private: Ed25519PrivateKey, comment: str = "") -> Signature:
    """Sign ``manifest``'s canonical bytes."""
    public = PublicKey(private.public_key().public_bytes_raw(), comment)
    return Signature(public, manifest.digest(), private.sign(manifest.canonical()))


def check(manifest: Manifest, signature: Signature, *, source: str = "the manifest") -> PublicKey:
    """The key that signed ``manifest``, once its signature is proved valid (trusted or not: see :func:`trusted`).

    Raises:
        PluginUntrusted: The signature does not match the manifest (it was changed after signing).
    """
    try:
        signature.key.verifier().verify(signature.value, manifest.canonical())
    except InvalidSignature:
        found = manifest.digest()
        raise PluginUntrusted(
            f"the signature of {source} does not match it: the manifest was changed after it was signed "
            f"(signed sha256 {signature.manifest_sha256[:16]}…, now {found[:16]}…)",
            plugin=manifest.name,
            hint="Do not use this package. The publisher must pack and sign it again (dativo plugin pack).",
        ) from None
    return signature.key


def is_trusted(key: PublicKey, keys: list[PublicKey]) -> bool:
    """Whether ``key`` is one of ``keys``."""
    return any(key.raw == k.raw for k in keys)
