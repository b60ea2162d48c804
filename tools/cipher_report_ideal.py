"""Check the cipher-report verdict on an ideal stand-in cipher (issue 17, "Also").

The battery's verdict (Holm's correction at family-wise alpha 0.05) should pass an ideal cipher
on about 95 % of seeds. This swaps the vault's Rossler keystream for ChaCha20 (a standard PRF
stream: SHA-256(key || nonce) as its key) in ``speechvault.cipher_report`` and reports
``seed_pass_rate`` -- a check of the p-values themselves, independent of the Rossler lanes.

    python tools/cipher_report_ideal.py SEEDS [AUDIO]
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms  # noqa: E402

from speechvault import cipher_report as cr  # noqa: E402
from store import envelope as ev  # noqa: E402


def chacha_body(plaintext: bytes, key: bytes, rng, nonce: bytes | None = None):
    """(blob, body) like ``cipher_report._sealed_body``, the body ChaCha20(plaintext); the blob
    has a real header (so ``parse_header`` works) and a zero tag (so opening it is refused)."""
    nonce = nonce or rng.bytes(ev.NONCE_SIZE)
    stream_key = hashlib.sha256(key + nonce).digest()
    body = Cipher(algorithms.ChaCha20(stream_key, nonce[:16]), mode=None).encryptor().update(plaintext)
    header = ev._seal_with_nonce(b"x", key, nonce, "rossler", "mixed", b"")[: ev.HEADER_SIZE]
    return header + body + bytes(32), body


if __name__ == "__main__":
    cr._sealed_body = chacha_body
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    print(json.dumps(cr.seed_pass_rate(sys.argv[2] if len(sys.argv) > 2 else None, seeds=seeds)))
