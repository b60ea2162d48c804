"""store.keys: HKDF vectors, scrypt wrap/unwrap, wrong passphrase first, rewrap, passphrase sources."""

from __future__ import annotations

import inspect
import json
import unicodedata

import pytest

import store.keys as keys
from speechvault.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    VaultFormatError,
    WrongPassphraseError,
)
from store.keys import (
    KeyWrap,
    hkdf_sha256,
    new_master_key,
    passphrase_from_env_or_file,
    rewrap,
    unwrap_master_key,
    wrap_master_key,
)

FAST = 10  # log2_n for tests; the default (17) is exercised once below


def test_hkdf_rfc5869_test_case_1():
    okm = hkdf_sha256(bytes([0x0B] * 22), salt=bytes(range(13)), info=bytes(range(0xF0, 0xFA)), length=42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_rfc5869_test_case_3_empty_salt_and_info():
    okm = hkdf_sha256(bytes([0x0B] * 22), length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_hkdf_length_limit():
    with pytest.raises(InvalidInputError):
        hkdf_sha256(b"k", length=255 * 32 + 1)


def test_new_master_key_is_random_32_bytes():
    a, b = new_master_key(), new_master_key()
    assert len(a) == 32 and a != b


def test_wrap_unwrap_round_trip_and_json():
    master = new_master_key()
    wrap = wrap_master_key(master, "correct horse", log2_n=FAST)
    assert (wrap.kdf, wrap.log2_n, wrap.r, wrap.p, len(wrap.salt)) == ("scrypt", FAST, 8, 1, 16)
    assert master not in wrap.wrapped
    restored = KeyWrap.from_dict(json.loads(json.dumps(wrap.to_dict())))
    assert restored == wrap
    assert unwrap_master_key(restored, "correct horse") == master


def test_default_cost_is_2_pow_17_and_works():
    assert inspect.signature(wrap_master_key).parameters["log2_n"].default == 17
    master = new_master_key()
    wrap = wrap_master_key(master, "pw")  # 128 MiB, well under a second: checks maxmem
    assert wrap.log2_n == 17 and unwrap_master_key(wrap, "pw") == master


def test_wrong_passphrase_is_detected_before_any_decryption(monkeypatch):
    wrap = wrap_master_key(new_master_key(), "right", log2_n=FAST)

    class NoDecryption:
        def __init__(self, *_):
            raise AssertionError("decryption attempted with a wrong passphrase")

    monkeypatch.setattr(keys, "_aead", NoDecryption)
    for wrong in ("wrong", "Right", "right ", ""):
        with pytest.raises(WrongPassphraseError, match="^wrong passphrase$"):
            unwrap_master_key(wrap, wrong)


def test_passphrase_is_nfc_normalised():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert unicodedata.normalize("NFC", decomposed) == composed and composed != decomposed
    master = new_master_key()
    assert unwrap_master_key(wrap_master_key(master, composed, log2_n=FAST), decomposed) == master


def test_damaged_wrapped_key_is_an_integrity_error():
    wrap = wrap_master_key(new_master_key(), "pw", log2_n=FAST)
    data = wrap.to_dict()
    data["wrapped"] = bytes([wrap.wrapped[0] ^ 1]).hex() + wrap.wrapped[1:].hex()
    with pytest.raises(IntegrityError):
        unwrap_master_key(KeyWrap.from_dict(data), "pw")


@pytest.mark.parametrize(
    "change",
    [{"kdf": "argon2"}, {"log2_n": 40}, {"r": 0}, {"salt": "zz"}, {"check": "00"}, {"wrapped": None}],
)
def test_malformed_wrap_is_a_format_error(change):
    data = {**wrap_master_key(new_master_key(), "pw", log2_n=FAST).to_dict(), **change}
    with pytest.raises(VaultFormatError):
        KeyWrap.from_dict(data)


def test_rewrap_keeps_the_master_key():
    master = new_master_key()
    old = wrap_master_key(master, "old", log2_n=FAST)
    new = rewrap(old, "old", "new")
    assert new.salt != old.salt and new.log2_n == FAST
    assert unwrap_master_key(new, "new") == master
    with pytest.raises(WrongPassphraseError):
        unwrap_master_key(new, "old")
    with pytest.raises(WrongPassphraseError):
        rewrap(old, "not old", "new")


def test_wrap_arguments_are_validated():
    with pytest.raises(InvalidInputError):
        wrap_master_key(b"short", "pw", log2_n=FAST)
    with pytest.raises(InvalidInputError):
        wrap_master_key(new_master_key(), "", log2_n=FAST)
    with pytest.raises(InvalidInputError):
        wrap_master_key(new_master_key(), "pw", log2_n=5)


def test_passphrase_from_file_strips_one_newline(tmp_path, monkeypatch):
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "from env")
    key_file = tmp_path / "key"
    key_file.write_text("secret\n\n", encoding="utf-8")
    assert passphrase_from_env_or_file(key_file) == "secret\n"  # the file wins over the env
    key_file.write_bytes(b"p\xc3\xa4ss \r\n")
    assert passphrase_from_env_or_file(key_file) == "p\u00e4ss "
    with pytest.raises(NotFoundError):
        passphrase_from_env_or_file(tmp_path / "missing")


def test_passphrase_from_env_or_none(monkeypatch):
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "from env")
    assert passphrase_from_env_or_file(None) == "from env"
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "")
    assert passphrase_from_env_or_file(None) is None
    monkeypatch.delenv(keys.PASSPHRASE_ENV)
    assert passphrase_from_env_or_file(None) is None
