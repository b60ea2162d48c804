"""model_export.attach_fingerprint: a new CRNN takes the shipped default's fingerprint and tau
unchanged, so switching the category stage leaves the indexed code as it was."""

from __future__ import annotations

import numpy as np
import pytest

from hashing.encoder import Encoder
from hashing.model_meta import ModelMeta
from model_export.attach_fingerprint import attach_fingerprint
from model_export.ship import MODELS_DIR
from speechvault.errors import ModelError

NEW = MODELS_DIR / "fsdd-cnn-k384.tflite"      # a shipped model without a fingerprint
DONOR = MODELS_DIR / "default.tflite"


def test_attached_model_indexes_the_donors_fingerprint_and_keeps_its_own_h1(tmp_path):
    t = attach_fingerprint(NEW, DONOR, tmp_path, "candidate")
    meta, donor = ModelMeta.load(t.with_suffix(".json")), ModelMeta.load(DONOR.with_suffix(".json"))
    assert meta.fingerprint == donor.fingerprint and meta.tau == donor.tau
    assert meta.metrics["h2_tau"] == ModelMeta.load(NEW.with_suffix(".json")).tau
    assert t.read_bytes() == NEW.read_bytes()
    enc = Encoder.from_files(t, num_threads=1)
    ref, new_alone = Encoder.default(num_threads=1), Encoder.from_files(NEW, num_threads=1)
    assert enc.code_name == "fingerprint"
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    a, b = enc.encode_audio(y), ref.encode_audio(y)
    np.testing.assert_array_equal(a.words, b.words)           # the same indexed code
    # h1 comes from the new network: on the same windows it gives the new model's outputs
    X = new_alone.windows(y)[0]
    np.testing.assert_allclose(enc.run_windows(X)[1], new_alone.run_windows(X)[1], atol=1e-6)
    assert not np.allclose(enc.run_windows(X)[1], ref.run_windows(X)[1], atol=1e-3)
    assert enc.tflite_sha256 == new_alone.tflite_sha256 != ref.tflite_sha256


def test_donor_without_fingerprint_is_refused(tmp_path):
    with pytest.raises(ModelError):
        attach_fingerprint(DONOR, NEW, tmp_path)


def test_re_attaching_keeps_the_models_own_h2_threshold(tmp_path):
    """A model given a newer donor's fingerprint a second time keeps the h2 threshold put aside
    the first time, not the first donor's fingerprint tau."""
    first = attach_fingerprint(NEW, DONOR, tmp_path / "a", "candidate")
    again = attach_fingerprint(first, DONOR, tmp_path / "b", "candidate")
    own = ModelMeta.load(NEW.with_suffix(".json")).tau
    assert ModelMeta.load(DONOR.with_suffix(".json")).tau != own
    assert ModelMeta.load(again.with_suffix(".json")).metrics["h2_tau"] == own


def test_model_input_rewrites_only_the_windowing_setting(tmp_path):
    """``--model-input grid`` on the default: the fingerprint file differs only in its windowing's
    ``model_input`` (same projection, mean and rule, the same indexed code of a recording), the
    metadata's fingerprint SHA-256 is the new file's, and re-writing a model's own fingerprint
    keeps where it came from."""
    from hashing.fingerprint import load_fingerprint
    from hashing.model_meta import sha256_hex

    t = attach_fingerprint(DONOR, DONOR, tmp_path, "grid-copy", model_input="grid")
    fp_path = t.with_name("grid-copy.fingerprint.npz")
    got, ref = load_fingerprint(fp_path.read_bytes()), Encoder.default(num_threads=1)._fp
    assert got.windowing["model_input"] == "grid" != ref.windowing.get("model_input", "grid")
    assert {k: v for k, v in got.windowing.items() if k != "model_input"} == \
        {k: v for k, v in ref.windowing.items() if k != "model_input"}
    assert type(got) is type(ref)  # the same code: a DDA projection or a learned network
    x = np.random.default_rng(0).standard_normal((5, ref.dim)).astype(np.float32)
    np.testing.assert_array_equal(got.bits(x), ref.bits(x))
    assert got.rule == ref.rule
    meta = ModelMeta.load(t.with_suffix(".json"))
    assert meta.fingerprint["sha256"] == sha256_hex(fp_path.read_bytes())
    donor = ModelMeta.load(DONOR.with_suffix(".json"))
    # where the fingerprint came from: the donor's own record, or the donor when it made its own
    origin = donor.training.get("fingerprint_from", {"model": donor.name})["model"]
    assert meta.training["fingerprint_from"]["model"] == origin
    y = (0.1 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32)
    np.testing.assert_array_equal(Encoder.from_files(t, num_threads=1).encode_audio(y).words,
                                  Encoder.default(num_threads=1).encode_audio(y).words)
