"""hashing.fingerprint (DDA identification code, issue 7): the fit, the file, the encoder and the
vault that index it."""

from __future__ import annotations

import io
from importlib import resources

import numpy as np
import pytest

from hashing import codes
from hashing.fingerprint import FINGERPRINT_SUFFIX, Fingerprint, fit_dda
from hashing.model_meta import ModelMeta
from speechvault.errors import ModelError


def _synthetic(seed=0, n=600, d=48, noisy_dims=8):
    """Clean vectors with variance in every dimension, and distortions that live in the first
    ``noisy_dims`` dimensions only (large, as added noise is on quiet cells)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.linspace(2.0, 1.0, d)
    noise = np.zeros((n, d))
    noise[:, :noisy_dims] = 3.0 * rng.standard_normal((n, noisy_dims))
    return X, X + noise


def test_dda_ignores_the_distortion_directions():
    """Bits of the DDA projections flip far less under the training distortion than those of
    random projections (sign-LSH of the same vectors), and stay as far apart between vectors."""
    X, Xd = _synthetic()
    fp = fit_dda(X, X, Xd, K=24, pca_dims=48)
    T, Td = _synthetic(seed=1)  # fresh data: the fit must generalise, not memorise
    flips_dda = np.mean(fp.bits(T) != fp.bits(Td))
    R = np.random.default_rng(5).standard_normal((48, 24))
    flips_rand = np.mean(((T - T.mean(0)) @ R > 0) != ((Td - T.mean(0)) @ R > 0))
    assert flips_dda < 0.05 < 0.2 < flips_rand
    b = fp.bits(T)
    assert 0.3 < np.mean(b[:300] != b[300:]) < 0.7  # different vectors stay ~K/2 apart
    assert 0.3 < b.mean() < 0.7                     # centred: bits are balanced


def test_distortion_covariance_in_blocks_equals_the_whole():
    """The distortion covariance summed a block of pairs at a time (memory) is the covariance of
    all differences at once, whatever the block size."""
    from hashing.fingerprint import _cov, _difference_cov

    rng = np.random.default_rng(3)
    a = rng.normal(size=(1000, 16)).astype(np.float32)
    b = (a + rng.normal(scale=0.1, size=a.shape)).astype(np.float32)
    whole = _cov(b.astype(np.float64) - a.astype(np.float64))
    for chunk in (1, 7, 999, 4096):
        np.testing.assert_allclose(_difference_cov(a, b, chunk), whole, rtol=1e-12, atol=1e-15)


def test_fit_rejects_bad_shapes():
    X, Xd = _synthetic()
    with pytest.raises(ValueError):
        fit_dda(X, X, Xd[:, :10], K=8)
    with pytest.raises(ValueError):
        fit_dda(X, X, Xd, K=100, pca_dims=48)


def test_file_round_trip_and_damage():
    X, Xd = _synthetic()
    fp = fit_dda(X, X, Xd, K=32, pca_dims=48)
    data = fp.to_bytes()
    back = Fingerprint.from_bytes(data)
    assert back.K == 32 and back.dim == 48 and back.sha256 == fp.sha256
    np.testing.assert_array_equal(back.bits(X), fp.bits(X))
    assert back.words(X).shape == (len(X), 1) and back.words(X).dtype == np.uint64
    with pytest.raises(ModelError, match="damaged"):
        Fingerprint.from_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="damaged"):
        Fingerprint.from_bytes(b"")
    buf = io.BytesIO()
    np.savez(buf, format=np.array("other/1"), mean=fp.mean, projection=fp.projection)
    with pytest.raises(ModelError, match="format"):
        Fingerprint.from_bytes(buf.getvalue())
    buf = io.BytesIO()
    bad = fp.projection.copy()
    bad[0, 0] = np.inf
    np.savez(buf, format=np.array("speechvault-fingerprint/1"), mean=fp.mean, projection=bad)
    with pytest.raises(ModelError, match="non-finite"):
        Fingerprint.from_bytes(buf.getvalue())
    with pytest.raises(ModelError, match="expects windows"):
        fp.bits(np.zeros((2, 10)))


def test_meta_fingerprint_field_is_validated():
    pkg = resources.files("hashing.models")
    d = ModelMeta.from_json(pkg.joinpath("default.json").read_bytes()).to_dict()
    d["fingerprint"] = {"method": "dda", "K": 0, "sha256": "00" * 32}
    with pytest.raises(ModelError, match="fingerprint"):
        ModelMeta.from_dict(d)
    d["fingerprint"] = {"method": "dda", "K": 64, "sha256": "xyz"}
    with pytest.raises(ModelError, match="fingerprint"):
        ModelMeta.from_dict(d)
    d["fingerprint"] = None
    m = ModelMeta.from_dict(d)
    assert m.code_name == "h2" and m.code_bits == m.K and m.model_id("ab" * 32) == "ab" * 32


# --------------------------------------------------------------------------- shipped default
#: the issue-7 model: a DDA fingerprint of the model window (the default now has identification
#: windows, tested in tests/test_excerpt.py)
DDA_MODEL = "fsdd-crnn-k384-dda"


def _default_parts():
    pkg = resources.files("hashing.models")
    meta = ModelMeta.from_json(pkg.joinpath(DDA_MODEL + ".json").read_bytes())
    return (pkg.joinpath(DDA_MODEL + ".tflite").read_bytes(), meta,
            pkg.joinpath(DDA_MODEL + FINGERPRINT_SUFFIX).read_bytes())


def _speech(name="3_en_2.wav"):
    from hashing.audio import load_audio

    path = resources.files("speechvault").joinpath("examples", name)
    return load_audio(path.read_bytes(), 16000), path


def test_default_encoder_indexes_the_fingerprint_and_keeps_h2():
    from hashing.encoder import Encoder

    blob, meta, fpb = _default_parts()
    enc = Encoder.from_bytes(blob, meta, num_threads=1, fingerprint=fpb)
    assert enc.code_name == "fingerprint" and enc.K == meta.fingerprint["K"]
    assert enc.tflite_sha256 == meta.tflite_sha256 and enc.sha256 == meta.model_id(meta.tflite_sha256)
    assert enc.sha256 != enc.tflite_sha256  # with/without fingerprint are different models
    y, _ = _speech()
    c = enc.encode_audio(y)
    win, _ = enc.windows(y)
    fp = Fingerprint.from_bytes(fpb)
    np.testing.assert_array_equal(c.bits, fp.bits(win))
    np.testing.assert_array_equal(c.words, codes.pack_words(fp.bits(win)))
    h, _ = enc.run_windows(win)
    np.testing.assert_array_equal(c.hash_words, codes.pack_words(codes.hash_bits(h)))
    assert c.code == "fingerprint" and c.hash_words.shape == (c.n_windows, meta.n_words)
    # the file must be there and be the one the metadata names
    with pytest.raises(ModelError, match="needs its fingerprint"):
        Encoder.from_bytes(blob, meta)
    tampered = bytearray(fpb)
    tampered[-100] ^= 1
    with pytest.raises(ModelError, match="does not match"):
        Encoder.from_bytes(blob, meta, fingerprint=bytes(tampered))


def test_default_fingerprint_separates_a_noisy_copy_from_other_takes():
    """Noise at 20 dB SNR moves the fingerprint of a recording less than the model's tau; every
    other example recording (other words, voices, takes) stays beyond it."""
    from hashing.cpo import add_noise_snr
    from hashing.encoder import Encoder

    enc = Encoder.shipped(DDA_MODEL, num_threads=1)
    y, _ = _speech()
    a = enc.encode_audio(y).words[0]
    b = enc.encode_audio(add_noise_snr(y, 20.0, np.random.default_rng(0))).words[0]
    tau = enc.meta.tau
    assert codes.ber(a, b, enc.K) < tau
    ex = resources.files("speechvault").joinpath("examples")
    others = [p for p in ex.iterdir() if p.name.endswith(".wav") and p.name != "3_en_2.wav"]
    assert len(others) >= 20
    d = [codes.ber(a, enc.encode_file(p.read_bytes()).words[0], enc.K) for p in others]
    assert min(d) > tau


def test_vault_stores_the_fingerprint_and_reopens_with_it(tmp_path):
    """A vault made with a fingerprint model keeps the fingerprint file next to the TFLite; opened
    again without an encoder it loads both and finds a noisy copy's original, alone."""
    from hashing.cpo import add_noise_snr
    from hashing.encoder import Encoder
    from store.vault import Vault

    enc = Encoder.shipped(DDA_MODEL, num_threads=1)
    ex = resources.files("speechvault").joinpath("examples")
    paths = sorted(tmp_path / p.name for p in ex.iterdir() if p.name[0].isdigit())
    for p in paths:
        p.write_bytes(ex.joinpath(p.name).read_bytes())
    path = tmp_path / "v.duckdb"
    with Vault.create(path, "pw", encoder=enc, kdf_log2_n=10) as v:
        rep = v.ingest(paths)
        assert len(rep.added) == len(paths) and v.K == enc.K and v.tau == enc.meta.tau
    y, _ = _speech()
    with Vault.open(path) as v:
        res = v.search(add_noise_snr(y, 20.0, np.random.default_rng(1)), mode="traversal")
        assert v.encoder.sha256 == enc.sha256 and v.encoder.fingerprint_bytes == enc.fingerprint_bytes
    assert res.matched and [h.name for h in res.hits] == ["3_en_2.wav"]

