"""Vault keys: a random master key, wrapped under a passphrase with scrypt (beyond the paper).

The paper (Sec. IV-B step 3) uses the Rossler initial state ``[x0, y0, z0]`` itself as the key
and says nothing about where it comes from or how it is kept. A vault needs a key that

* is uniformly random and long (``new_master_key``: 32 bytes from ``secrets``), so every
  per-blob key derived from it (``store.envelope``, HKDF-SHA256) is as strong as the KDF allows;
* can be unlocked by a person: a passphrase is stretched with scrypt (memory-hard, so guessing
  costs ~128 MiB and ~0.3 s per try at the default ``log2_n=17``, r=8, p=1) into a key-encryption
  key (KEK), and the master key is stored only encrypted under it (``KeyWrap``);
* tells a wrong passphrase apart from a damaged wrap *before anything is decrypted*: the KEK
  also yields a check value ``HMAC-SHA256(check_key, CHECK_LABEL)`` stored in the wrap;
  ``unwrap_master_key`` compares it in constant time and raises ``WrongPassphraseError`` on a
  mismatch. Only then is the wrapped key opened (ChaCha20-Poly1305 from ``cryptography``; its
  tag failing means the wrap was tampered with -> ``IntegrityError``);
* survives ``passwd``: ``rewrap`` re-encrypts the same master key under a new passphrase with a
  fresh salt, so no recording has to be re-encrypted.

Passphrases are ``str``, NFC-normalised and UTF-8 encoded, so the same visible passphrase typed
on systems that compose accents differently unlocks the same vault.

``hkdf_sha256`` (RFC 5869) lives here because every derived key of the project goes through it:
per-blob subkeys in ``store.envelope`` and the lane seeds of ``store.rossler``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path


from speechvault.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    VaultFormatError,
    WrongPassphraseError,
)

__all__ = [
    "MASTER_KEY_BYTES",
    "KDF_NAME",
    "DEFAULT_LOG2_N",
    "KeyWrap",
    "hkdf_sha256",
    "new_master_key",
    "normalize_passphrase",
    "wrap_master_key",
    "unwrap_master_key",
    "rewrap",
    "passphrase_from_env_or_file",
    "PASSPHRASE_ENV",
]

MASTER_KEY_BYTES = 32
KDF_NAME = "scrypt"
DEFAULT_LOG2_N = 17            # N = 2^17: 128 MiB per guess with r = 8 (the minimum)
SCRYPT_R = 8
SCRYPT_P = 1
MIN_LOG2_N, MAX_LOG2_N = 10, 22  # 10 only for tests; 22 = 4 GiB, a sane ceiling for a stored wrap
SALT_BYTES = 16
PASSPHRASE_ENV = "SPEECHVAULT_PASSPHRASE"

_KEK_LABEL = b"speechvault/keys/v1 kek"
_CHECK_LABEL = b"speechvault/keys/v1 key check"
_WRAP_NONCE = bytes(12)  # each wrap has a fresh salt, hence a fresh KEK: a fixed nonce is safe
_SHA256_LEN = 32


# --- HKDF (RFC 5869) ------------------------------------------------------------------------
def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 sec. 2.2: PRK = HMAC-Hash(salt, IKM); an empty salt means HashLen zero bytes."""
    return hmac.new(salt or bytes(_SHA256_LEN), ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 sec. 2.3: T(i) = HMAC(PRK, T(i-1) | info | i), at most 255 * HashLen bytes."""
    if not 0 < length <= 255 * _SHA256_LEN:
        raise InvalidInputError(f"HKDF output length must be 1..{255 * _SHA256_LEN}, got {length}")
    blocks, previous = [], b""
    for counter in range(1, -(-length // _SHA256_LEN) + 1):
        previous = hmac.new(prk, previous + info + bytes([counter]), hashlib.sha256).digest()
        blocks.append(previous)
    return b"".join(blocks)[:length]


def hkdf_sha256(ikm: bytes, *, salt: bytes = b"", info: bytes = b"", length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt``, expand with ``info`` to ``length`` bytes."""
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


# --- master key and its passphrase wrap -----------------------------------------------------
def new_master_key() -> bytes:
    """32 uniformly random bytes from the OS CSPRNG (``secrets``): the vault's master key."""
    return secrets.token_bytes(MASTER_KEY_BYTES)


def normalize_passphrase(passphrase: str) -> bytes:
    """NFC-normalise and UTF-8 encode, so composed and decomposed accents give the same key."""
    if not isinstance(passphrase, str):
        raise InvalidInputError("the passphrase must be text")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


@dataclass(frozen=True)
class KeyWrap:
    """The master key encrypted under a passphrase-derived key, plus what is needed to redo it.

    ``wrapped`` is ChaCha20-Poly1305(master key) (32 + 16 bytes); ``check`` the 32-byte HMAC key
    check compared before decryption. JSON-safe via ``to_dict``/``from_dict`` (bytes as hex).
    """

    kdf: str
    salt: bytes
    log2_n: int
    r: int
    p: int
    wrapped: bytes
    check: bytes

    def to_dict(self) -> dict:
        return {
            "kdf": self.kdf,
            "salt": self.salt.hex(),
            "log2_n": self.log2_n,
            "r": self.r,
            "p": self.p,
            "wrapped": self.wrapped.hex(),
            "check": self.check.hex(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "KeyWrap":
        """Parse and validate a stored wrap; a malformed one is a ``VaultFormatError``."""
        try:
            wrap = cls(
                kdf=str(data["kdf"]),
                salt=bytes.fromhex(data["salt"]),
                log2_n=int(data["log2_n"]),
                r=int(data["r"]),
                p=int(data["p"]),
                wrapped=bytes.fromhex(data["wrapped"]),
                check=bytes.fromhex(data["check"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise VaultFormatError(f"malformed key wrap: {exc!r}") from None
        _validate_wrap(wrap)
        return wrap


def _validate_wrap(wrap: KeyWrap) -> None:
    """Refuse unknown KDFs and costs outside sane bounds (a hostile wrap must not eat all RAM)."""
    if wrap.kdf != KDF_NAME:
        raise VaultFormatError(f"unknown key derivation function {wrap.kdf!r}")
    if not MIN_LOG2_N <= wrap.log2_n <= MAX_LOG2_N or not 1 <= wrap.r <= 32 or not 1 <= wrap.p <= 16:
        raise VaultFormatError(
            f"key wrap scrypt cost out of range (log2_n={wrap.log2_n}, r={wrap.r}, p={wrap.p})"
        )
    if len(wrap.salt) < 8 or len(wrap.check) != _SHA256_LEN or len(wrap.wrapped) != MASTER_KEY_BYTES + 16:
        raise VaultFormatError("malformed key wrap: wrong field sizes")


def _scrypt(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    """scrypt -> 32 bytes, through ``cryptography`` (OpenSSL): ``hashlib.scrypt`` caps ``maxmem``
    below 2 GiB, which refused N = 2^20..2^22 (1-4 GiB) with a ValueError. Same RFC 7914 output.
    Not enough memory is a one-line error, not a traceback."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    try:
        return Scrypt(salt=salt, length=_SHA256_LEN, n=1 << log2_n, r=r, p=p).derive(
            normalize_passphrase(passphrase))
    except MemoryError:
        need = 128 * r * p * (1 << log2_n) / 2**30
        raise InvalidInputError(
            f"scrypt with N = 2^{log2_n} needs {need:.2g} GiB of memory, which this machine could "
            "not provide") from None


def _kek_and_check_key(passphrase: str, params: tuple[bytes, int, int, int]) -> tuple[bytes, bytes]:
    """Split the scrypt output into a wrapping key and a key-check key (HKDF, separate labels)."""
    salt, log2_n, r, p = params
    stretched = _scrypt(passphrase, salt, log2_n, r, p)
    kek = hkdf_sha256(stretched, info=_KEK_LABEL)
    check_key = hkdf_sha256(stretched, info=_CHECK_LABEL)
    return kek, check_key


def _key_check(check_key: bytes) -> bytes:
    return hmac.new(check_key, _CHECK_LABEL, hashlib.sha256).digest()


def _wrap_ad(kdf: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    """The AEAD associated data binds the KDF parameters to the wrapped key."""
    return b"|".join([_KEK_LABEL, kdf.encode(), salt, str((log2_n, r, p)).encode()])


def _aead(kek: bytes):
    """ChaCha20-Poly1305 under ``kek``, imported on first use rather than at the top: every
    vault command imports this module (the HKDF of the index MACs), few wrap a key, and
    cryptography's import was ~15-20 ms of a one-shot ``speechvault search`` (issue 13)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    return ChaCha20Poly1305(kek)


def wrap_master_key(master: bytes, passphrase: str, *, log2_n: int = DEFAULT_LOG2_N) -> KeyWrap:
    """Encrypt ``master`` under scrypt(passphrase) with a fresh 16-byte salt."""
    if len(master) != MASTER_KEY_BYTES:
        raise InvalidInputError(f"the master key must be {MASTER_KEY_BYTES} bytes, got {len(master)}")
    if not passphrase:
        raise InvalidInputError("the passphrase must not be empty")
    if not MIN_LOG2_N <= int(log2_n) <= MAX_LOG2_N:
        raise InvalidInputError(f"scrypt log2_n must be {MIN_LOG2_N}..{MAX_LOG2_N}, got {log2_n}")
    salt = os.urandom(SALT_BYTES)
    params = (salt, int(log2_n), SCRYPT_R, SCRYPT_P)
    kek, check_key = _kek_and_check_key(passphrase, params)
    ad = _wrap_ad(KDF_NAME, *params)
    wrapped = _aead(kek).encrypt(_WRAP_NONCE, master, ad)
    return KeyWrap(KDF_NAME, salt, int(log2_n), SCRYPT_R, SCRYPT_P, wrapped, _key_check(check_key))


def unwrap_master_key(wrap: KeyWrap, passphrase: str) -> bytes:
    """Recover the master key; ``WrongPassphraseError`` (checked before decrypting) if it is wrong."""
    _validate_wrap(wrap)
    params = (wrap.salt, wrap.log2_n, wrap.r, wrap.p)
    kek, check_key = _kek_and_check_key(passphrase, params)
    if not hmac.compare_digest(_key_check(check_key), wrap.check):
        raise WrongPassphraseError("wrong passphrase")
    from cryptography.exceptions import InvalidTag  # lazy, as in _aead

    try:
        return _aead(kek).decrypt(_WRAP_NONCE, wrap.wrapped, _wrap_ad(wrap.kdf, *params))
    except InvalidTag:
        raise IntegrityError("the wrapped master key is damaged (key check passed, tag failed)") from None


def rewrap(wrap: KeyWrap, old: str, new: str, *, log2_n: int | None = None) -> KeyWrap:
    """Change the passphrase: same master key, new salt (and optionally a new scrypt cost)."""
    master = unwrap_master_key(wrap, old)
    return wrap_master_key(master, new, log2_n=wrap.log2_n if log2_n is None else log2_n)


def passphrase_from_env_or_file(key_file: Path | None) -> str | None:
    """The passphrase from ``key_file`` if given (one trailing newline stripped), else from
    ``$SPEECHVAULT_PASSPHRASE``, else ``None`` (the CLI then prompts). An empty value is ``None``."""
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(f"key file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read key file {path}: {exc.__class__.__name__}") from None
        for newline in ("\r\n", "\n"):
            if text.endswith(newline):
                text = text[: -len(newline)]
                break
        return text or None
    return os.environ.get(PASSPHRASE_ENV) or None
