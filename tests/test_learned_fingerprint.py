"""The learned window code (fingerprint format 3, issue 12): a LiteRT network in the
fingerprint file, its bits independent of batching, checked on load, and the real path
(a vault coded with it finds an excerpt in a reopened file that loads the network from itself).

The network here is the product's architecture at its smallest (2-16 channels, 64 bits) and
untrained: what is tested is the format and the plumbing, not the code's robustness
(docs/results/excerpt_rule_trials.md measures that)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="building a window network needs tensorflow (the 'train' extra)")

from hashing.fingerprint import load_fingerprint  # noqa: E402
from hashing.learned_fingerprint import BATCH_WINDOWS, LearnedFingerprint  # noqa: E402
from hashing.windowing import WindowingSpec  # noqa: E402
from speechvault.errors import ModelError  # noqa: E402

SR = 16_000


@pytest.fixture(scope="module")
def learned() -> LearnedFingerprint:
    import tensorflow as tf

    from model_export.window_code import _network, window_code

    tf.keras.utils.set_random_seed(3)
    spec = WindowingSpec()
    net = _network(spec, K=64, width=2)
    x = np.random.default_rng(0).standard_normal((200, spec.n_mels, spec.window_frames, 1))
    centre = np.median(net.predict(x.astype(np.float32), verbose=0), axis=0)
    return window_code(net, centre, spec)


def windows(n: int, dim: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_bits_do_not_depend_on_the_batch(learned):
    """A stored window is coded among its recording's windows, a query window among the
    query's: one window alone, in a batch, and across the interpreter's batch boundary gets
    the same bits."""
    x = windows(BATCH_WINDOWS + 45, learned.dim)
    together = learned.bits(x)
    alone = np.concatenate([learned.bits(x[i:i + 1]) for i in range(0, len(x), 7)])
    assert together.shape == (len(x), 64) and together.dtype == np.uint8
    assert np.array_equal(alone, together[::7])
    assert np.array_equal(learned.bits(x[100:300]), together[100:300])
    assert 0.3 < together.mean() < 0.7  # bits about the medians: both values occur
    assert learned.bits(np.zeros((0, learned.dim), np.float32)).shape == (0, 64)


def test_file_round_trip_keeps_bits_and_identity(learned):
    data = learned.to_bytes()
    again = load_fingerprint(data)
    assert isinstance(again, LearnedFingerprint)
    assert again.K == 64 and again.dim == learned.dim and again.windowing == learned.windowing
    x = windows(20, learned.dim)
    assert np.array_equal(again.bits(x), learned.bits(x))
    assert again.to_bytes() == data and again.sha256 == learned.sha256
    ruled = dataclasses.replace(again, rule={"tau_window": 0.3})
    assert load_fingerprint(ruled.to_bytes()).rule == {"tau_window": 0.3}
    assert ruled.sha256 != learned.sha256  # the rule is part of the identity


def test_damaged_or_inconsistent_files_are_refused_in_one_line(learned):
    with pytest.raises(ModelError, match="expects windows of"):
        learned.bits(windows(3, learned.dim - 1))
    broken = dataclasses.replace  # the constructor checks what a loaded file would
    with pytest.raises(ModelError, match="cannot be loaded") as e:
        broken(learned, model=learned.model[: len(learned.model) // 2])
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="units"):
        broken(learned, centre=learned.centre[:10])
    data = bytearray(learned.to_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\0" * 64
    with pytest.raises(ModelError):
        load_fingerprint(bytes(data))
    with pytest.raises(ModelError, match="damaged or not a fingerprint"):
        load_fingerprint(b"not an npz")
    from hashing.fingerprint import Fingerprint

    with pytest.raises(ModelError, match="learned code"):  # the DDA reader names what it got
        Fingerprint.from_bytes(learned.to_bytes())


def test_a_vault_coded_with_it_finds_an_excerpt_after_reopening(learned, tmp_path):
    """The shipped CRNN with the learned code as its fingerprint: ingest, reopen read-only
    (the model, network included, comes from the vault file), search a 4 s excerpt."""
    from hashing.audio import write_wav
    from hashing.encoder import Encoder
    from hashing.model_meta import sha256_hex
    from store.vault import Vault
    from tests.test_excerpt import long_recording

    base = Encoder.default()
    if base.windowing is None:
        pytest.skip("the default model has no identification windows")
    fp = dataclasses.replace(learned, rule=base.excerpt_rule)
    data = fp.to_bytes()
    meta = dataclasses.replace(base.meta, fingerprint={
        "method": "cnn-windows", "K": fp.K, "sha256": sha256_hex(data)})
    enc = Encoder(base.tflite_bytes, meta, fingerprint=data)
    assert enc.K == 64 and enc.sha256 != base.sha256
    recs = {f"r{i}.wav": long_recording(300 + i, 12.0) for i in range(2)}
    for name, y in recs.items():
        write_wav(tmp_path / name, y, SR)
    path = tmp_path / "v.duckdb"
    with Vault.create(path, "pw", encoder=enc, kdf_log2_n=10) as v:
        assert len(v.ingest([tmp_path / n for n in recs]).added) == 2
    start = 256 * 200 / SR  # on the frame grid: the excerpt's windows are the stored ones
    ex = recs["r1.wav"][int(start * SR): int((start + 4.0) * SR)]
    with Vault.open(path) as v:
        assert v.encoder.sha256 == enc.sha256
        res = v.search(ex)
    assert res.matched and [h.name for h in res.hits] == ["r1.wav"]
    assert res.hits[0].offset == pytest.approx(start, abs=0.05)


def test_training_lowers_the_contrastive_loss_and_export_records_how(tmp_path):
    """``model_export.window_code``: NT-Xent training on (window, degraded window) pairs lowers
    its loss; ``--keras`` exports a trained network with its medians and records the command."""
    import tensorflow as tf

    from model_export import window_code as wc

    tf.keras.utils.set_random_seed(5)
    spec = WindowingSpec()
    rng = np.random.default_rng(2)
    n = wc.BATCH * 2
    clean = rng.standard_normal((n, spec.dim)).astype(np.float16)
    noisy = (clean + 0.3 * rng.standard_normal((n, spec.dim))).astype(np.float16)
    losses = []
    net, centre = wc.train_window_cnn(clean, noisy, spec, K=32, width=2, epochs=3, threads=1,
                                      log=lambda m: losses.append(float(m.split("loss ")[1].split()[0])))
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert centre.shape == (32,) and centre.dtype == np.float32
    path = tmp_path / "net.keras"
    net.save(path)
    np.save(tmp_path / "net_centre.npy", centre)
    out = tmp_path / "code.fingerprint.npz"
    assert wc.main(["unused-fsdd", "--out", str(out), "--keras", str(path), "--bits", "32",
                    "--width", "2", "--trained-by", "a test"]) == 0
    fp = load_fingerprint(out.read_bytes())
    assert isinstance(fp, LearnedFingerprint) and fp.K == 32
    assert fp.training["trained_by"] == "a test" and "--keras" in fp.training["command"]
    x = windows(4, fp.dim)
    units = net.predict(x.reshape(4, spec.n_mels, spec.window_frames, 1), verbose=0)
    assert np.array_equal(fp.bits(x), (units > centre).astype(np.uint8))  # LiteRT = Keras here


def test_voice_copies_are_other_voices_of_the_same_speech():
    """``window_code.voice_copies``: each recording again as other voices (VTLP + pitch), as
    long as the original (the pairs cut windows at the same places), reproducible by seed."""
    from model_export import window_code as wc

    t = np.arange(SR) / SR
    y = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    copies = wc.voice_copies([y, y[: SR // 2]], copies=2, seed=4)
    assert [len(c) for c in copies] == [SR, SR, SR // 2, SR // 2]
    assert all(np.all(np.isfinite(c)) and np.max(np.abs(c)) <= 1.0 for c in copies)
    assert not np.allclose(copies[0], y, atol=1e-3) and not np.allclose(copies[0], copies[1])
    again = wc.voice_copies([y, y[: SR // 2]], copies=2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(copies, again))


def test_pairs_cache_builds_once_then_reads(tmp_path):
    """``window_code.cached_pairs``: the first call builds and writes the pairs (all but the
    clean windows, which training does not use), the next reads the same arrays back without
    building (a seed sweep pays for the pairs once)."""
    from model_export import window_code as wc

    rng = np.random.default_rng(3)
    pairs = {k: rng.standard_normal((5, 8)).astype(np.float16)
             for k in ("clean", "original", "distorted")}
    pairs["window_id"] = np.arange(5, dtype=np.int64)
    calls = []

    def build():
        calls.append(1)
        return pairs

    path = str(tmp_path / "pairs.npz")
    first = wc.cached_pairs(path, build)
    second = wc.cached_pairs(path, build)
    assert len(calls) == 1
    for got in (first, second):
        assert sorted(got) == ["distorted", "original", "window_id"]
        assert all(np.array_equal(got[k], pairs[k]) for k in got)
        assert got["original"].dtype == np.float16
    assert wc.cached_pairs(None, build)["distorted"] is pairs["distorted"] and len(calls) == 2
    bare = str(tmp_path / "bare")  # no suffix: written as bare.npz, and found there again
    wc.cached_pairs(bare, build)
    wc.cached_pairs(bare, build)
    assert len(calls) == 3 and (tmp_path / "bare.npz").exists()
    assert not list(tmp_path.glob("*.tmp.npz"))  # written aside, then moved into place


def test_speaker_batches_hold_one_speaker_and_distinct_windows():
    """``window_code.epoch_batches``: with no speaker share the steps are the plain permutation
    (the recipe's batches unchanged); with share 1 every step holds one speaker's pairs, never
    two views of one window; a synthetic voice (-1) is never in a speaker step."""
    from model_export import window_code as wc

    n, batch = 4000, 64
    window_id = np.arange(n) // 4          # four views of each window, adjacent
    speaker = (window_id % 5).astype(np.int8) - 1   # -1 (synthetic) and speakers 0-3
    plain = wc.epoch_batches(n, batch, np.random.default_rng(7))
    order = np.random.default_rng(7).permutation(n)
    assert len(plain) == n // batch
    assert all(np.array_equal(s, np.sort(order[i * batch:(i + 1) * batch]))
               for i, s in enumerate(plain))
    steps = wc.epoch_batches(n, batch, np.random.default_rng(7), 1.0, window_id, speaker)
    assert len(steps) == n // batch
    for s in steps:
        assert len(s) == batch and len(set(speaker[s])) == 1 and speaker[s][0] >= 0
        assert len(np.unique(window_id[s])) == batch
    half = wc.epoch_batches(n, batch, np.random.default_rng(7), 0.5, window_id, speaker)
    mixed = sum(len(set(speaker[s])) > 1 for s in half)
    assert 0 < mixed < len(half)

def test_training_pairs_carry_window_ids_and_speakers(monkeypatch):
    """``window_code.training_pairs``: each pair knows its original window (the views of one
    window share the id) and its FSDD FIT speaker (-1 for a synthetic voice), on two short
    stand-in recordings (the real FIT data needs FSDD and espeak-ng)."""
    from model_export import excerpt_fingerprint as xf
    from model_export import long_speech as ls
    from model_export import window_code as wc

    rng = np.random.default_rng(5)
    speech = [(0.3 * rng.standard_normal(3 * SR) * (np.arange(3 * SR) % 4000 < 2500))
              .astype(np.float32) for _ in range(2)]
    real = [ls.LongRecording("fit-x", "fsdd", ls.FSDD_FIT_SPEAKERS[2], speech[0])]
    monkeypatch.setattr(xf, "fit_long_recordings", lambda *a, **k: real)
    monkeypatch.setattr(xf, "fit_recordings", lambda *a, **k: [speech[1]])
    spec = WindowingSpec()
    pairs = wc.training_pairs(None, spec, views=2, babble_share=0.0, telephone_share=0.0)
    n = len(pairs["original"])
    assert n > 0 and len(pairs["window_id"]) == n == len(pairs["speaker"])
    signal = pairs["window_id"] >> 20
    assert set(np.unique(signal)) == {0, 1}
    assert np.all(pairs["speaker"][signal == 0] == 2)
    assert np.all(pairs["speaker"][signal == 1] == -1)
    ids, counts = np.unique(pairs["window_id"], return_counts=True)
    assert counts.max() <= 2 and (counts == 2).any()  # two views, mostly of the same windows
    first = np.flatnonzero(pairs["window_id"] == ids[counts == 2][0])
    assert np.array_equal(pairs["original"][first[0]], pairs["original"][first[1]])
