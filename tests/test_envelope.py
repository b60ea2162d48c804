"""store.envelope: round trips, golden blobs, and one IntegrityError message per failure kind."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import store.envelope as envelope
from speechvault.errors import IntegrityError, InvalidInputError
from store.envelope import HEADER_SIZE, open_sealed, parse_header, seal, tag_size
from store.rossler import BLOCK_BYTES, RosslerStream, rossler_xor

GOLDEN = json.loads((Path(__file__).parent / "golden" / "envelope_vectors.json").read_text())
KEY = bytes(range(32))
OTHER_KEY = bytes([KEY[0] ^ 1]) + KEY[1:]
MODES = [("rossler", "mixed"), ("rossler", "paper"), ("chacha20poly1305", "mixed")]
MODE_IDS = ["rossler-mixed", "rossler-paper", "chacha"]

BAD_MAGIC = "bad magic"
BAD_HEADER = "bad blob header"
BAD_VERSION = "unknown blob format version"
TRUNCATED = "truncated blob"
APPENDED = "length mismatch"
TAG = "authentication failed"


def payload(n: int) -> bytes:
    return np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()


def patched(blob: bytes, offset: int, value: bytes) -> bytes:
    return blob[:offset] + value + blob[offset + len(value) :]


def flipped(blob: bytes, offset: int) -> bytes:
    return patched(blob, offset, bytes([blob[offset] ^ 0x01]))


@pytest.mark.parametrize(("cipher", "extraction"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("n", [0, 1, 7, 4095, 24_577, BLOCK_BYTES + 3])
def test_round_trip(cipher, extraction, n):
    data = payload(n)
    blob = seal(data, KEY, cipher=cipher, extraction=extraction, associated_data=b"rec-1")
    assert len(blob) == HEADER_SIZE + n + tag_size(cipher)
    assert open_sealed(blob, KEY, associated_data=b"rec-1") == data
    if n > 64:
        assert data[:64] not in blob


@pytest.mark.parametrize("vector", GOLDEN["blobs"], ids=lambda v: v["cipher"] + str(v["extraction"]))
def test_golden_blobs(vector):
    key, blob = bytes.fromhex(vector["key"]), bytes.fromhex(vector["blob"])
    ad, plaintext = bytes.fromhex(vector["associated_data"]), bytes.fromhex(vector["plaintext"])
    assert open_sealed(blob, key, associated_data=ad) == plaintext
    again = envelope._seal_with_nonce(plaintext, key, bytes.fromhex(vector["nonce"]), vector["cipher"],
                                      vector["extraction"], ad)
    assert again == blob


def test_header_fields():
    blob = seal(b"abc", KEY)
    header = parse_header(blob)
    assert blob[:4] == b"SVB1" and HEADER_SIZE == 44
    assert (header.version, header.cipher, header.extraction) == (1, "rossler", "mixed")
    assert (header.log2_lanes, header.step, header.transient, header.length) == (13, 0.125, 8, 3)
    assert header.nonce == blob[20:36] and len(header.nonce) == 16
    assert json.dumps(header.to_dict())
    chacha = parse_header(seal(b"abc", KEY, cipher="chacha20poly1305"))
    assert (chacha.cipher, chacha.extraction, chacha.step) == ("chacha20poly1305", None, 0.0)


@pytest.mark.parametrize(("cipher", "extraction"), MODES, ids=MODE_IDS)
def test_fresh_nonce_per_blob(cipher, extraction):
    data = payload(5000)
    a = seal(data, KEY, cipher=cipher, extraction=extraction)
    b = seal(data, KEY, cipher=cipher, extraction=extraction)
    assert parse_header(a).nonce != parse_header(b).nonce
    body_a, body_b = np.frombuffer(a[HEADER_SIZE:-32], np.uint8), np.frombuffer(b[HEADER_SIZE:-32], np.uint8)
    assert (body_a == body_b).mean() < 0.02  # the paper's cipher alone would give equal ciphertexts


# --- one message per failure kind -----------------------------------------------------------
def _tamper_cases(blob: bytes) -> list[tuple[str, bytes, str]]:
    n = parse_header(blob).length
    return [
        ("magic", flipped(blob, 0), BAD_MAGIC),
        ("version", patched(blob, 4, b"\x07"), BAD_VERSION),
        ("cipher id", patched(blob, 5, b"\x09"), BAD_HEADER),
        ("extraction id", patched(blob, 6, b"\x09"), BAD_HEADER),
        ("nonce", flipped(blob, 25), TAG),
        ("length +1", patched(blob, 36, struct.pack(">Q", n + 1)), TRUNCATED),
        ("length -1", patched(blob, 36, struct.pack(">Q", n - 1)), APPENDED),
        ("body", flipped(blob, HEADER_SIZE + 10), TAG),
        ("tag", flipped(blob, len(blob) - 1), TAG),
        ("truncated", blob[:-1], TRUNCATED),
        ("truncated header", blob[:20], TRUNCATED),
        ("empty", b"", TRUNCATED),
        ("appended", blob + b"\x00", APPENDED),
        ("not a blob", b"RIFF" + blob[4:], BAD_MAGIC),
    ]


@pytest.mark.parametrize(("cipher", "extraction"), MODES, ids=MODE_IDS)
def test_each_failure_has_its_own_message(cipher, extraction):
    blob = seal(payload(300), KEY, cipher=cipher, extraction=extraction)
    for what, bad, message in _tamper_cases(blob):
        with pytest.raises(IntegrityError, match=message):
            open_sealed(bad, KEY)
        assert what  # (the case name shows in the traceback)


def test_rossler_parameter_bytes_are_validated_or_authenticated():
    blob = seal(payload(300), KEY)
    with pytest.raises(IntegrityError, match=TAG):  # other valid extraction: the tag covers it
        open_sealed(patched(blob, 6, b"\x02"), KEY)
    with pytest.raises(IntegrityError, match=BAD_HEADER):
        open_sealed(patched(blob, 8, struct.pack(">d", float("inf"))), KEY)
    with pytest.raises(IntegrityError, match=TAG):
        open_sealed(patched(blob, 8, struct.pack(">d", 0.0625)), KEY)
    with pytest.raises(IntegrityError, match=TAG):
        open_sealed(patched(blob, 7, b"\x0b"), KEY)
    with pytest.raises(IntegrityError, match=BAD_HEADER):  # rossler header claiming chacha
        open_sealed(patched(blob, 5, b"\x02"), KEY)


@pytest.mark.parametrize(("cipher", "extraction"), MODES, ids=MODE_IDS)
def test_wrong_key_and_swapped_associated_data_fail(cipher, extraction):
    a = seal(b"recording one", KEY, cipher=cipher, extraction=extraction, associated_data=b"id=1")
    seal(b"recording two", KEY, cipher=cipher, extraction=extraction, associated_data=b"id=2")
    with pytest.raises(IntegrityError, match=TAG):
        open_sealed(a, OTHER_KEY, associated_data=b"id=1")
    with pytest.raises(IntegrityError, match=TAG):  # blob a moved into record 2
        open_sealed(a, KEY, associated_data=b"id=2")
    with pytest.raises(IntegrityError, match=TAG):
        open_sealed(a, KEY)


def test_tag_is_checked_before_anything_is_decrypted(monkeypatch):
    blob = flipped(seal(payload(1000), KEY), HEADER_SIZE + 3)

    def no_decryption(*_args, **_kwargs):
        raise AssertionError("decryption started before the tag was verified")

    monkeypatch.setattr(envelope, "_rossler_stream", no_decryption)
    with pytest.raises(IntegrityError, match=TAG):
        open_sealed(blob, KEY)


def test_paper_key_sensitivity_weakness_vs_envelope():
    """The paper's cipher: x0 + 1e-10 decrypts a long prefix. The envelope: any other key fails."""
    data = payload(12_000)
    encrypted = rossler_xor(data, (0.1, 0.2, 0.3))
    leaked = rossler_xor(encrypted, (0.1 + 1e-10, 0.2, 0.3))
    assert leaked[:10_000] == data[:10_000]
    blob = seal(data, KEY)
    with pytest.raises(IntegrityError, match=TAG):
        open_sealed(blob, OTHER_KEY)
    # and the keystreams of keys one bit apart share only ~1/256 of their bytes
    nonce = parse_header(blob).nonce
    ks_a = RosslerStream(KEY, nonce).keystream(10_000)
    ks_b = RosslerStream(OTHER_KEY, nonce).keystream(10_000)
    assert (ks_a == ks_b).mean() < 0.01


def test_invalid_arguments():
    with pytest.raises(InvalidInputError, match="cipher"):
        seal(b"x", KEY, cipher="aes")
    with pytest.raises(InvalidInputError, match="extraction"):
        seal(b"x", KEY, extraction="fancy")
    with pytest.raises(InvalidInputError, match="rossler cipher only"):
        seal(b"x", KEY, cipher="chacha20poly1305", extraction="paper")
    with pytest.raises(InvalidInputError, match="key"):
        seal(b"x", b"short")
    with pytest.raises(InvalidInputError, match="key"):
        open_sealed(seal(b"x", KEY), b"short")
