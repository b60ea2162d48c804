"""hashing.codes: eq. 11-12 bits, eq. 13-15 one-hot, packing layout, eq. 16 BER."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hashing import codes
from hashing.model_meta import ModelMeta
from speechvault.errors import InvalidInputError, ModelError


def test_hash_bits_threshold_is_the_vector_mean():
    v = np.array([[0.9, -0.2, 0.1, 0.3], [-1.0, -0.5, -0.5, 0.0]])
    # means: 0.275 and -0.5; >= mean is 1
    np.testing.assert_array_equal(codes.hash_bits(v), [[1, 0, 0, 1], [0, 1, 1, 1]])
    assert codes.hash_bits(v).dtype == np.uint8
    np.testing.assert_array_equal(codes.hash_bits(v[0]), [1, 0, 0, 1])


def test_hash_bits_invariant_to_common_offset_and_positive_scale():
    rng = np.random.default_rng(0)
    v = np.tanh(rng.standard_normal((5, 384)))
    np.testing.assert_array_equal(codes.hash_bits(v), codes.hash_bits(3 * v + 0.25))


def test_hash_bits_rejects_nan():
    with pytest.raises(InvalidInputError):
        codes.hash_bits(np.array([0.1, np.nan]))


def test_pack_layout_bit_i_goes_to_word_i_div_64_position_i_mod_64():
    K = 130
    for i in (0, 1, 63, 64, 65, 127, 128, 129):
        bits = np.zeros(K, np.uint8)
        bits[i] = 1
        w = codes.pack_words(bits)
        assert w.dtype == np.uint64 and w.shape == (3,)
        expected = np.zeros(3, np.uint64)
        expected[i // 64] = np.uint64(1) << np.uint64(i % 64)
        np.testing.assert_array_equal(w, expected)


def test_pack_words_shapes():
    assert codes.pack_words(np.zeros((4, 384), np.uint8)).shape == (4, 6)
    assert codes.pack_words(np.ones((2, 65), np.uint8)).shape == (2, 2)
    assert codes.n_words(64) == 1 and codes.n_words(65) == 2 and codes.n_words(384) == 6
    # padding bits beyond K stay 0
    w = codes.pack_words(np.ones(65, np.uint8))
    assert int(w[1]) == 1 and int(w[0]) == 2**64 - 1


def test_pack_rejects_non_binary():
    with pytest.raises(InvalidInputError):
        codes.pack_words(np.array([0, 2, 1]))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 520).flatmap(
    lambda K: hnp.arrays(np.uint8, st.tuples(st.integers(1, 4), st.just(K)), elements=st.integers(0, 1))))
def test_unpack_inverts_pack(bits):
    K = bits.shape[1]
    w = codes.pack_words(bits)
    assert w.shape == (bits.shape[0], (K + 63) // 64)
    np.testing.assert_array_equal(codes.unpack_words(w, K), bits)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 520), st.integers(0, 2**31 - 1))
def test_ber_equals_fraction_of_differing_bits(K, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, (3, K), dtype=np.uint8)
    b = rng.integers(0, 2, (3, K), dtype=np.uint8)
    d = codes.ber(codes.pack_words(a), codes.pack_words(b), K)
    np.testing.assert_allclose(d, np.mean(a != b, axis=1))
    # metric properties: symmetric, zero on itself, in [0, 1]
    np.testing.assert_allclose(d, codes.ber(codes.pack_words(b), codes.pack_words(a), K))
    assert np.all(codes.ber(codes.pack_words(a), codes.pack_words(a), K) == 0)
    assert np.all((d >= 0) & (d <= 1))


def test_ber_broadcasts_query_against_library_and_complement_is_one():
    rng = np.random.default_rng(3)
    lib = rng.integers(0, 2, (10, 384), dtype=np.uint8)
    q = lib[4]
    d = codes.ber(codes.pack_words(q), codes.pack_words(lib), 384)
    assert d.shape == (10,) and d[4] == 0.0 and np.all(d[np.arange(10) != 4] > 0.3)
    assert codes.ber(codes.pack_words(q), codes.pack_words(1 - q), 384) == 1.0
    assert isinstance(codes.ber(codes.pack_words(q), codes.pack_words(q), 384), float)


def test_ber_rejects_wrong_word_count():
    with pytest.raises(InvalidInputError):
        codes.ber(np.zeros(6, np.uint64), np.zeros(5, np.uint64), 384)


def test_popcount_matches_python():
    x = np.array([0, 1, 2**63, 2**64 - 1, 0xF0F0F0F0F0F0F0F0], dtype=np.uint64)
    assert codes.popcount64(x).tolist() == [bin(int(v)).count("1") for v in x]


def test_one_hot():
    oh = codes.one_hot([2, 0], 4)
    np.testing.assert_array_equal(oh, [[0, 0, 1, 0], [1, 0, 0, 0]])
    assert oh.dtype == np.uint8
    with pytest.raises(InvalidInputError):
        codes.one_hot([4], 4)


# --------------------------------------------------------------------------- model metadata


def _meta(**kw):
    d = dict(name="m", arch="cnn", K=384, C=3, class_names=["a", "b", "c"],
             features={"sample_rate": 16000}, input_shape=[128, 32, 1])
    d.update(kw)
    return ModelMeta(**d)


def test_meta_roundtrip(tmp_path):
    m = _meta(training={"held_out_speakers": ["theo"]}, metrics={"acc": 0.9},
              tflite_sha256="ab" * 32)
    p = m.save(tmp_path / "m.json")
    back = ModelMeta.load(p)
    assert back == m
    assert back.to_dict()["format"] == "speechvault-model/1"
    assert back.tau == 0.26 and back.n_words == 6


@pytest.mark.parametrize("change", [
    {"arch": "rnn"}, {"K": 0}, {"K": True}, {"C": 1, "class_names": ["a"]},
    {"class_names": ["a", "b"]}, {"class_names": ["a", "a", "b"]}, {"tau": 0.5}, {"tau": 0.0},
    {"input_shape": [128, 0, 1]}, {"outputs": {"hash": {"name": "h", "index": 0}}},
    {"outputs": {"hash": {"name": "h", "index": 1}, "probs": {"name": "p", "index": 1}}},
    {"tflite_sha256": "xyz"}, {"features": {}}, {"format": "speechvault-model/2"},
])
def test_meta_validation_rejects(change):
    with pytest.raises(ModelError):
        _meta(**change).validate()


@pytest.mark.parametrize("text", [b"", b"[]", b"{not json", b'{"format": "speechvault-model/1"}',
                                  b'{"format": "other"}'])
def test_meta_from_json_rejects_malformed(text):
    with pytest.raises(ModelError):
        ModelMeta.from_json(text)


def test_meta_rejects_unknown_fields_and_missing_file(tmp_path):
    d = _meta().to_dict()
    d["surprise"] = 1
    with pytest.raises(ModelError, match="unknown"):
        ModelMeta.from_dict(d)
    with pytest.raises(ModelError, match="not found"):
        ModelMeta.load(tmp_path / "nope.json")


def test_meta_check_sha256():
    blob = b"model bytes"
    m = _meta(tflite_sha256=__import__("hashlib").sha256(blob).hexdigest())
    assert m.check_sha256(blob) == m.tflite_sha256
    with pytest.raises(ModelError):
        m.check_sha256(b"other")
