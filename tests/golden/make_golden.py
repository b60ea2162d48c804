"""Regenerate the cipher golden vectors (run only on purpose: a change means a format break).

    /work/venv/bin/python tests/golden/make_golden.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from store.envelope import _seal_with_nonce  # noqa: E402
from store.rossler import RosslerStream, rossler_keystream  # noqa: E402

TRAJECTORY_KEYS = [(0.1, 0.2, 0.3), (1.0, -2.0, 0.5)]
STREAM_KEY = bytes(range(32))
STREAM_NONCES = [bytes(16), bytes(range(100, 116))]
FAR_OFFSET = (1 << 20) - 8  # ten-odd generation blocks into the stream
ENVELOPE_PLAINTEXT = b"speechvault golden vector: 16 kHz, 16-bit RIFF... \x00\x01\x02\xff"


def trajectory_vectors() -> list[dict]:
    return [
        {"key": list(key), "extraction": ext,
         "first_64": rossler_keystream(key, 64, extraction=ext).tobytes().hex()}
        for key in TRAJECTORY_KEYS for ext in ("paper", "mixed")
    ]


def stream_vectors() -> list[dict]:
    out = []
    for nonce in STREAM_NONCES:
        for ext in ("paper", "mixed"):
            stream = RosslerStream(STREAM_KEY, nonce, extraction=ext).keystream(FAR_OFFSET + 16)
            out.append({
                "key": STREAM_KEY.hex(), "nonce": nonce.hex(), "extraction": ext,
                "first_64": stream[:64].tobytes().hex(),
                "far_offset": FAR_OFFSET, "far_16": stream[FAR_OFFSET:].tobytes().hex(),
            })
    return out


def envelope_vectors() -> list[dict]:
    cases = [("rossler", "mixed"), ("rossler", "paper"), ("chacha20poly1305", None)]
    return [
        {"cipher": c, "extraction": e, "key": STREAM_KEY.hex(), "nonce": STREAM_NONCES[1].hex(),
         "associated_data": b"recording-42".hex(), "plaintext": ENVELOPE_PLAINTEXT.hex(),
         "blob": _seal_with_nonce(
             ENVELOPE_PLAINTEXT, STREAM_KEY, STREAM_NONCES[1], c, e, b"recording-42").hex()}
        for c, e in cases
    ]


if __name__ == "__main__":
    (HERE / "rossler_vectors.json").write_text(json.dumps(
        {"trajectory": trajectory_vectors(), "stream": stream_vectors()}, indent=1) + "\n")
    (HERE / "envelope_vectors.json").write_text(json.dumps({"blobs": envelope_vectors()}, indent=1) + "\n")
    print("wrote", HERE / "rossler_vectors.json", HERE / "envelope_vectors.json")
