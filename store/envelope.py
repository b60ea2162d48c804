"""Sealed blobs: the paper's Rossler cipher inside a nonce + encrypt-then-MAC envelope (beyond the paper).

The paper's cipher (Sec. IV-B, ``store.rossler.rossler_xor``) alone has two flaws a vault
cannot accept: every file encrypted under one key gets the *same* keystream (XOR of two
ciphertexts = XOR of two plaintexts), and nothing detects tampering. Its key sensitivity is
also weaker than "chaotic" suggests: with ``floor(frac(x)*256)`` a key changed by 1e-10 still
decrypts the first ~14-16 KB correctly (measured: first wrong byte at 13818-15625 for three
keys; ``tests/test_envelope.py``), because the
error grows only like exp(0.07 t) (the largest Lyapunov exponent of eq. 8).

So every blob gets

* a random 128-bit nonce (``secrets``); HKDF-SHA256 (RFC 5869, ``store.keys.hkdf_sha256``)
  with the vault key as input and the nonce as salt yields *separate* per-blob subkeys for
  encryption and for the MAC;
* the keystream of ``store.rossler.RosslerStream`` (lane states derived from the encryption
  subkey and the nonce), default extraction ``"mixed"``;
* an HMAC-SHA256 tag over the whole header (version, cipher id, extraction, step, lanes,
  transient, nonce, length), the optional ``associated_data`` (length-prefixed) and the
  ciphertext, checked with ``hmac.compare_digest`` *before* anything is decrypted
  (encrypt-then-MAC). ``associated_data`` (e.g. the recording's id or sha256) is not stored in
  the blob; the vault passes it again on open, so a blob swapped between two records fails.

``cipher="chacha20poly1305"`` replaces keystream and MAC by the vetted AEAD from
``cryptography`` (per-blob key from HKDF, header + associated data as AEAD associated data),
for users who need vetted cryptography. The default stays the paper's Rossler cipher.

Blob format (all integers big-endian)
-------------------------------------
=======  =====  ============================================================================
offset   size   field
=======  =====  ============================================================================
0        4      magic ``b"SVB1"``
4        1      format version = 1
5        1      cipher id: 1 = rossler (HMAC-SHA256), 2 = chacha20poly1305
6        1      extraction id: 1 = mixed, 2 = paper (rossler); 0 (chacha20poly1305)
7        1      log2(lanes) of the Rossler keystream (12); 0 for chacha20poly1305
8        8      RK4 step h, IEEE-754 binary64 (0.125 mixed, 0.01 paper); 0.0 for chacha
16       4      transient steps discarded per lane (uint32; 8 mixed, 200 paper); 0 chacha
20       16     nonce (random, 128 bits)
36       8      plaintext length n (uint64)
44       n      ciphertext
44+n     32/16  tag: HMAC-SHA256 (rossler) or Poly1305 (chacha20poly1305)
=======  =====  ============================================================================

Failures are ``IntegrityError`` with distinct messages: bad magic / bad header, unknown
version, truncated, trailing bytes after the tag (length mismatch), and tag mismatch. A
tampered ciphertext, a wrong key and a wrong ``associated_data`` are indistinguishable by design
(the tag just fails), so they share the last message.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import struct
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from speechvault.errors import IntegrityError, InvalidInputError
from store.keys import hkdf_expand, hkdf_extract
from store.rossler import LANE_TRANSIENT, LANES, STEP, RosslerStream

__all__ = [
    "MAGIC",
    "VERSION",
    "CIPHERS",
    "DEFAULT_CIPHER",
    "HEADER_SIZE",
    "NONCE_SIZE",
    "BlobHeader",
    "seal",
    "open_sealed",
    "parse_header",
    "tag_size",
]

MAGIC = b"SVB1"
VERSION = 1
NONCE_SIZE = 16
CIPHERS = ("rossler", "chacha20poly1305")
DEFAULT_CIPHER = "rossler"
_CIPHER_IDS = {"rossler": 1, "chacha20poly1305": 2}
_EXTRACTION_IDS = {"mixed": 1, "paper": 2}
_TAG_SIZES = {"rossler": 32, "chacha20poly1305": 16}
_HEADER = struct.Struct(">4sBBBBdI16sQ")
HEADER_SIZE = _HEADER.size  # 44
_MAX_LOG2_LANES = 20
_MAX_TRANSIENT = 100_000
_ENC_LABEL = b"speechvault/blob/v1 rossler keystream"
_MAC_LABEL = b"speechvault/blob/v1 hmac-sha256"
_AEAD_LABEL = b"speechvault/blob/v1 chacha20poly1305"
_AEAD_NONCE = bytes(12)  # every blob has its own HKDF key, so a fixed AEAD nonce never repeats
_MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class BlobHeader:
    """The parsed fixed-size header of a sealed blob (see the byte table in the module doc)."""

    version: int
    cipher: str
    extraction: str | None
    log2_lanes: int
    step: float
    transient: int
    nonce: bytes
    length: int
    raw: bytes

    @property
    def tag_size(self) -> int:
        return _TAG_SIZES[self.cipher]

    @property
    def blob_size(self) -> int:
        return HEADER_SIZE + self.length + self.tag_size

    def to_dict(self) -> dict:
        d = asdict(self)
        d["nonce"] = self.nonce.hex()
        del d["raw"]
        return d


def tag_size(cipher: str = DEFAULT_CIPHER) -> int:
    """Bytes a blob adds after the ciphertext; total overhead is HEADER_SIZE + tag_size."""
    return _TAG_SIZES[_check_cipher(cipher)]


def _check_cipher(cipher: str) -> str:
    if cipher not in _CIPHER_IDS:
        raise InvalidInputError(f"unknown cipher {cipher!r}; use one of {CIPHERS}")
    return cipher


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) < _MIN_KEY_BYTES:
        raise InvalidInputError(f"a vault key must be at least {_MIN_KEY_BYTES} bytes")
    return bytes(key)


def _pack_header(cipher: str, extraction: str | None, nonce: bytes, length: int) -> bytes:
    if cipher == "rossler":
        return _HEADER.pack(
            MAGIC, VERSION, _CIPHER_IDS[cipher], _EXTRACTION_IDS[extraction],
            LANES.bit_length() - 1, STEP[extraction], LANE_TRANSIENT[extraction], nonce, length,
        )
    return _HEADER.pack(MAGIC, VERSION, _CIPHER_IDS[cipher], 0, 0, 0.0, 0, nonce, length)


def parse_header(blob: bytes) -> BlobHeader:
    """Parse and validate the header; raises ``IntegrityError`` (nothing is authenticated yet)."""
    start = bytes(blob[: len(MAGIC)])
    if start != MAGIC[: len(start)]:
        raise IntegrityError("not a speechvault blob: bad magic")
    if len(blob) < HEADER_SIZE:
        raise IntegrityError(f"truncated blob: {len(blob)} bytes, the header alone needs {HEADER_SIZE}")
    raw = bytes(blob[:HEADER_SIZE])
    _, version, cipher_id, extraction_id, log2_lanes, step, transient, nonce, length = _HEADER.unpack(raw)
    if version != VERSION:
        raise IntegrityError(f"unknown blob format version {version} (this speechvault reads {VERSION})")
    ciphers = {v: k for k, v in _CIPHER_IDS.items()}
    if cipher_id not in ciphers:
        raise IntegrityError(f"bad blob header: unknown cipher id {cipher_id}")
    cipher = ciphers[cipher_id]
    extraction = _parse_parameters(cipher, extraction_id, log2_lanes, step, transient)
    return BlobHeader(version, cipher, extraction, log2_lanes, step, transient, nonce, length, raw)


def _parse_parameters(cipher: str, extraction_id: int, log2_lanes: int, step: float, transient: int):
    """Validate the cipher parameters of the header; returns the extraction name (or None)."""
    if cipher == "chacha20poly1305":
        if (extraction_id, log2_lanes, step, transient) != (0, 0, 0.0, 0):
            raise IntegrityError("bad blob header: chacha20poly1305 blob with Rossler parameters")
        return None
    extractions = {v: k for k, v in _EXTRACTION_IDS.items()}
    if extraction_id not in extractions:
        raise IntegrityError(f"bad blob header: unknown extraction id {extraction_id}")
    if not (log2_lanes <= _MAX_LOG2_LANES and math.isfinite(step) and 0.0 < step <= 0.25
            and transient <= _MAX_TRANSIENT):
        raise IntegrityError("bad blob header: Rossler parameters out of range")
    return extractions[extraction_id]


def _split_blob(blob: bytes, header: BlobHeader) -> tuple[memoryview, bytes]:
    """(ciphertext, tag) after checking the total size against the header's length field."""
    expected = header.blob_size
    if len(blob) < expected:
        raise IntegrityError(f"truncated blob: {len(blob)} bytes, the header announces {expected}")
    if len(blob) > expected:
        raise IntegrityError(
            f"length mismatch: {len(blob) - expected} unexpected bytes after the blob's tag"
        )
    view = memoryview(blob)
    return view[HEADER_SIZE : HEADER_SIZE + header.length], bytes(view[HEADER_SIZE + header.length :])


def _blob_prk(key: bytes, nonce: bytes) -> bytes:
    """HKDF-Extract(salt=nonce, ikm=vault key): the per-blob pseudo-random key."""
    return hkdf_extract(nonce, key)


def _authenticated_prefix(header_raw: bytes, associated_data: bytes) -> bytes:
    """Header || u64(len(AD)) || AD: what the tag covers besides the ciphertext."""
    return header_raw + struct.pack(">Q", len(associated_data)) + bytes(associated_data)


def _rossler_tag(mac_key: bytes, prefix: bytes, ciphertext) -> bytes:
    mac = hmac.new(mac_key, prefix, hashlib.sha256)
    mac.update(ciphertext)
    return mac.digest()


def _rossler_stream(prk: bytes, header: BlobHeader) -> RosslerStream:
    return RosslerStream(
        hkdf_expand(prk, _ENC_LABEL, 32), header.nonce, extraction=header.extraction,
        step=header.step, lanes=1 << header.log2_lanes, transient=header.transient,
    )


def _seal_with_nonce(plaintext: bytes, key: bytes, nonce: bytes, cipher: str, extraction: str | None,
                     associated_data: bytes) -> bytes:
    """``seal`` with a given nonce (tests and golden vectors only: a nonce must never repeat)."""
    header_raw = _pack_header(cipher, extraction, nonce, len(plaintext))
    header = parse_header(header_raw)
    prefix = _authenticated_prefix(header_raw, associated_data)
    prk = _blob_prk(key, nonce)
    if cipher == "chacha20poly1305":
        aead = ChaCha20Poly1305(hkdf_expand(prk, _AEAD_LABEL, 32))
        return header_raw + aead.encrypt(_AEAD_NONCE, bytes(plaintext), prefix)
    ciphertext = _rossler_stream(prk, header).xor_to_array(plaintext)
    tag = _rossler_tag(hkdf_expand(prk, _MAC_LABEL, 32), prefix, ciphertext)
    return b"".join((header_raw, ciphertext, tag))  # one copy of the ciphertext


def seal(
    plaintext: bytes,
    key: bytes,
    *,
    cipher: str = DEFAULT_CIPHER,
    extraction: str = "mixed",
    associated_data: bytes = b"",
) -> bytes:
    """Encrypt and authenticate ``plaintext`` under ``key`` with a fresh random nonce.

    ``extraction`` selects the Rossler byte extraction ("mixed" default, "paper" literal); it
    must stay "mixed" (ignored) for chacha20poly1305."""
    cipher = _check_cipher(cipher)
    if extraction not in _EXTRACTION_IDS:
        raise InvalidInputError(f"unknown extraction {extraction!r}; use 'mixed' or 'paper'")
    if cipher == "chacha20poly1305":
        if extraction != "mixed":
            raise InvalidInputError("extraction applies to the rossler cipher only")
        extraction = None
    return _seal_with_nonce(
        bytes(plaintext), _check_key(key), secrets.token_bytes(NONCE_SIZE), cipher, extraction,
        bytes(associated_data),
    )


def open_sealed(blob: bytes, key: bytes, *, associated_data: bytes = b"") -> bytes:
    """Verify the tag (constant time) and only then decrypt; ``IntegrityError`` on any failure."""
    key = _check_key(key)
    header = parse_header(blob)
    ciphertext, tag = _split_blob(blob, header)
    prefix = _authenticated_prefix(header.raw, associated_data)
    prk = _blob_prk(key, header.nonce)
    if header.cipher == "chacha20poly1305":
        aead = ChaCha20Poly1305(hkdf_expand(prk, _AEAD_LABEL, 32))
        try:
            return aead.decrypt(_AEAD_NONCE, bytes(ciphertext) + tag, prefix)
        except InvalidTag:
            raise IntegrityError(_TAG_MISMATCH) from None
    expected = _rossler_tag(hkdf_expand(prk, _MAC_LABEL, 32), prefix, ciphertext)
    if not hmac.compare_digest(expected, tag):
        raise IntegrityError(_TAG_MISMATCH)
    return _rossler_stream(prk, header).xor(ciphertext)


_TAG_MISMATCH = (
    "authentication failed: the blob was tampered with, the key is wrong, "
    "or it belongs to another record (associated data differs)"
)
