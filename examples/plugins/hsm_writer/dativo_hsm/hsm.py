"""The HSM side: one logged-in PKCS#11 session per token, and the few operations the writer needs.

The key-encryption key (KEK) is an AES key stored in the token, ideally non-extractable: it never leaves
the HSM. Everything it protects is sent to the HSM instead:

* **data keys** (per Parquet file, made by pyarrow) are imported as short-lived session objects and wrapped
  with ``CKM_AES_KEY_WRAP`` (RFC 3394); unwrapping goes the other way and reads the key's value back, because
  pyarrow must hold a data key in memory to en- or decrypt the pages;
* **small blobs** (the commit's incremental state and schema) are sealed with ``CKM_AES_GCM`` in the HSM.

PKCS#11 logs in per process and token, not per session: a second ``C_Login`` fails with
``CKR_USER_ALREADY_LOGGED_IN`` and would even hide a wrong PIN. So sessions are shared per (library, token)
with a reference count, and a later user must present the PIN that logged in (compared as a salted digest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass
from typing import Any

from dativo.errors import ConfigError, ConnectionFailed, DativoError
from pydantic import BaseModel, ConfigDict, Field, SecretStr

try:  # a missing python-pkcs11 is reported when the writer is used, with the pip line
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
    from pkcs11 import exceptions as p11
except ImportError:  # pragma: no cover - declared as a dependency of this package
    pkcs11 = None

_GCM_NONCE = 12
_SALT = os.urandom(16)  # PINs are only ever compared as salted digests, never kept in clear


class DecryptionFailed(DativoError):
    """A data key or a sealed blob could not be unwrapped: wrong HSM key, or tampered data."""

    exit_code = 1


class HsmSettings(BaseModel):
    """How to reach the key-encryption key inside the HSM."""

    model_config = ConfigDict(extra="forbid")

    pkcs11_library: str = Field(
        description="Path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so (SoftHSM2)."
    )
    token_label: str = Field(description="Label of the token (slot) holding the key.")
    key_label: str = Field(description="Label of the AES key-encryption key inside the token.")
    pin: SecretStr = Field(description="User PIN of the token; write ${ENV} or ${file:...}, never the PIN itself.")

    def where(self) -> str:
        """A description that is safe to log (no PIN)."""
        return f"token '{self.token_label}' of {self.pkcs11_library}"


@dataclass
class _Shared:
    session: Any
    pin_digest: bytes
    users: int


_sessions: dict[tuple[str, str], _Shared] = {}
_lock = threading.RLock()  # one lock for every HSM call: sessions are not thread-safe


def _digest(pin: str) -> bytes:
    return hashlib.sha256(_SALT + pin.encode()).digest()


def _library(path: str) -> Any:
    if pkcs11 is None:
        raise ConfigError(
            "python-pkcs11 is not installed", hint="pip install python-pkcs11 (a dependency of dativo-hsm)."
        )
    if not os.path.isfile(path):
        raise ConfigError(
            f"PKCS#11 library {path} not found",
            hint="Set pkcs11_library to the HSM vendor's module (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so, "
            "from the Debian package softhsm2).",
        )
    try:
        return pkcs11.lib(path)
    except p11.PKCS11Error as exc:
        raise ConfigError(
            f"cannot load PKCS#11 library {path}: {exc}",
            hint="Point pkcs11_library at a PKCS#11 module (a .so) built for this machine.",
        ) from None


class Keyring:
    """The KEK of one token, behind a shared logged-in session.

    Args:
        settings: Library, token, key label and PIN.
        allow_extractable_key: Accept a KEK whose value could be exported from the HSM.
    """

    def __init__(self, settings: HsmSettings, *, allow_extractable_key: bool = False) -> None:
        self.settings = settings
        self.allow_extractable_key = allow_extractable_key
        self._key: Any = None
        self._slot = (os.path.realpath(settings.pkcs11_library), settings.token_label)

    # --- session -------------------------------------------------------------------------------------

    def open(self) -> None:
        """Log in (or join the logged-in session) and find the key.

        Raises:
            ConfigError: Library, token or key not found, or the key unfit for wrapping.
            ConnectionFailed: The PIN was refused, or the token does not answer.
        """
        if self._key is not None:
            return
        s = self.settings
        with _lock:
            shared = _sessions.get(self._slot)
            if shared is not None:
                if not hmac.compare_digest(shared.pin_digest, _digest(s.pin.get_secret_value())):
                    raise self._wrong_pin()
                shared.users += 1
            else:
                shared = _Shared(self._login(), _digest(s.pin.get_secret_value()), 1)
                _sessions[self._slot] = shared
            try:
                self._key = self._find_key(shared.session)
            except BaseException:
                self._release()
                raise

    def _login(self) -> Any:
        s = self.settings
        lib = _library(s.pkcs11_library)
        try:
            token = lib.get_token(token_label=s.token_label)
        except p11.NoSuchToken:
            labels = sorted({slot.get_token().label for slot in lib.get_slots(token_present=True)})
            raise ConfigError(
                f"no token labelled '{s.token_label}' in {s.pkcs11_library}",
                hint=f"Tokens present: {', '.join(labels) or 'none'}. Fix token_label, or initialise the token "
                "(SoftHSM2: softhsm2-util --init-token; check SOFTHSM2_CONF).",
            ) from None
        except p11.PKCS11Error as exc:
            raise ConnectionFailed(f"{s.where()}: the HSM does not answer: {exc!r}",
                                   hint="Check the HSM and its module.") from None
        try:
            return token.open(user_pin=s.pin.get_secret_value(), rw=True)
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            raise self._wrong_pin() from None
        except p11.PinLocked:
            raise ConnectionFailed(f"{s.where()}: the user PIN is locked",
                                   hint="Ask the HSM's security officer to reset it.") from None
        except p11.PKCS11Error as exc:
            raise ConnectionFailed(f"{s.where()}: cannot log in: {exc!r}", hint="Check the HSM.") from None

    def _wrong_pin(self) -> ConnectionFailed:
        return ConnectionFailed(
            f"{self.settings.where()}: the PIN was refused",
            hint="Check the secret the job's pin refers to (${ENV} or ${file:...}); repeated failures may "
            "lock the token.",
        )

    def _find_key(self, session: Any) -> Any:
        s = self.settings
        try:
            key = session.get_key(label=s.key_label, object_class=ObjectClass.SECRET_KEY)
        except p11.NoSuchKey:
            raise ConfigError(
                f"{s.where()} has no secret key labelled '{s.key_label}'",
                hint="Fix key_label, or create a non-extractable AES-256 key with that label in the token.",
            ) from None
        except p11.MultipleObjectsReturned:
            raise ConfigError(f"{s.where()} has several keys labelled '{s.key_label}'",
                              hint="Give the key-encryption key a unique label.") from None
        if key.key_type != KeyType.AES:
            raise ConfigError(f"key '{s.key_label}' is not an AES key", hint="Use an AES-256 key.")
        if key[Attribute.EXTRACTABLE] and not self.allow_extractable_key:
            raise ConfigError(
                f"key '{s.key_label}' is extractable: its value could leave the HSM",
                hint="Create the key with CKA_EXTRACTABLE false, or set allow_extractable_key: true.",
            )
        return key

    def close(self) -> None:
        """Leave the shared session; the last user closes it (which logs the process out)."""
        if self._key is None:
            return
        self._key = None
        with _lock:
            self._release()

    def _release(self) -> None:
        shared = _sessions.get(self._slot)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del _sessions[self._slot]
            try:
                shared.session.close()
            except p11.PKCS11Error:  # closing is best effort: the token logs out when the process ends
                pass

    def __enter__(self) -> Keyring:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- operations ----------------------------------------------------------------------------------

    def wrap(self, data_key: bytes) -> bytes:
        """Wrap a data key with the KEK (``CKM_AES_KEY_WRAP``, RFC 3394)."""
        self.open()
        with _lock:
            session = _sessions[self._slot].session
            temporary = session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: data_key,
                Attribute.TOKEN: False,  # a session object: gone when the session closes
                Attribute.EXTRACTABLE: True,
                Attribute.SENSITIVE: False,
            })
            try:
                return bytes(self._key.wrap_key(temporary, mechanism=Mechanism.AES_KEY_WRAP))
            finally:
                temporary.destroy()

    def unwrap(self, wrapped: bytes) -> bytes:
        """Unwrap a data key; a different KEK fails RFC 3394's integrity check.

        Raises:
            DecryptionFailed: The key was wrapped by another KEK, or altered.
        """
        self.open()
        with _lock:
            try:
                key = self._key.unwrap_key(
                    ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.AES_KEY_WRAP,
                    store=False, template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
                )
            except p11.PKCS11Error as exc:
                raise self._undecryptable("a data key", exc) from None
            try:
                return bytes(key[Attribute.VALUE])
            finally:
                key.destroy()

    def seal(self, plaintext: bytes, aad: bytes) -> dict[str, str]:
        """Encrypt a small blob in the HSM with AES-GCM; ``aad`` binds it to its context."""
        self.open()
        nonce = os.urandom(_GCM_NONCE)
        with _lock:
            data = self._key.encrypt(plaintext, mechanism=Mechanism.AES_GCM,
                                     mechanism_param=pkcs11.GCMParams(nonce, aad, 128))
        return {"alg": "AES-256-GCM (HSM)", "key": self.settings.key_label,
                "nonce": base64.b64encode(nonce).decode(), "data": base64.b64encode(bytes(data)).decode()}

    def unseal(self, sealed: dict[str, str], aad: bytes) -> bytes:
        """The inverse of :meth:`seal`.

        Raises:
            DecryptionFailed: Another KEK, another context, or tampered data.
        """
        self.open()
        with _lock:
            try:
                return bytes(self._key.decrypt(
                    base64.b64decode(sealed["data"]), mechanism=Mechanism.AES_GCM,
                    mechanism_param=pkcs11.GCMParams(base64.b64decode(sealed["nonce"]), aad, 128),
                ))
            except p11.PKCS11Error as exc:
                raise self._undecryptable("the commit's sealed state", exc) from None

    def _undecryptable(self, what: str, exc: Exception) -> DecryptionFailed:
        return DecryptionFailed(
            f"{self.settings.where()}: key '{self.settings.key_label}' cannot decrypt {what} "
            f"({type(exc).__name__})",
            hint="The data was encrypted under another key-encryption key (another HSM or token), or altered.",
        )


__all__ = ["DecryptionFailed", "HsmSettings", "Keyring"]
