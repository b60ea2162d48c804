"""Long signals are encoded block by block (hashing/streaming.py) with exactly the codes of the
one-shot path (issue 17, item 7): every field of ``WindowCodes`` equal, for stored and query
windows, at block sizes down to one frame and one window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hashing import streaming, windowing

EXAMPLES = Path(__file__).resolve().parents[1] / "speechvault" / "examples"
FIELDS = ("category", "probs", "bits", "words", "starts", "hash_words", "frames", "activity")


@pytest.fixture(scope="module")
def enc():
    pytest.importorskip("ai_edge_litert")
    from hashing.encoder import Encoder

    e = Encoder.default()
    if e.windowing is None:
        pytest.skip("the default model has no identification windows")
    return e


@pytest.fixture(scope="module")
def signals(enc):
    from hashing.audio import load_audio

    sent = load_audio(str(EXAMPLES / "sentence_en-us_1.wav"), enc.sample_rate)
    digit = load_audio(str(EXAMPLES / "3_en-m3_1.wav"), enc.sample_rate)
    rng = np.random.default_rng(1)
    quiet = np.zeros(20_000, np.float32)
    return {
        "digit": digit, "part of a window": sent[:3000], "silence": np.zeros(16_000, np.float32),
        "pauses around": np.concatenate([quiet, sent, quiet[:9000]]),
        "three gains": np.concatenate([sent * g for g in (1.0, 0.6, 0.8)]
                                      + [rng.normal(0, 0.001, 5000).astype(np.float32)]),
        # a stretch buried in noise (windows the noise-floor rule drops, hashing.windowing)
        "buried": np.concatenate([sent, sent * 0.05]) + rng.normal(0, 0.01, 2 * sent.size)
        .astype(np.float32),
        # one word in 23 s: the model's own input of a take (encoder.take_model_windows), read
        # from the stretch around it
        "a word in a long silence": np.concatenate([quiet] * 18 + [digit, quiet])
        + rng.normal(0, 1e-4, 19 * quiet.size + digit.size).astype(np.float32),
    }


def _same(a, b) -> list[str]:
    bad = [f for f in FIELDS if not np.array_equal(getattr(a, f), getattr(b, f))]
    return bad + ([] if (a.K, a.code) == (b.K, b.code) else ["K/code"])


@pytest.mark.parametrize("n", [100, 511, 512, 5000, 112_123])
def test_band_log_mel_in_blocks_is_bit_identical(enc, n):
    y = (np.random.default_rng(n).standard_normal(n) * 0.1).astype(np.float32)
    ref = windowing.band_log_mel(y, enc.windowing)
    for block in (1, 7, 64, streaming.FRAME_BLOCK):
        assert np.array_equal(streaming.band_log_mel_blocks(y, enc.windowing, block), ref)


@pytest.mark.parametrize("purpose", ["store", "query"])
def test_windowed_codes_in_blocks_equal_the_one_shot_codes(enc, signals, purpose):
    for name, a in signals.items():
        ref = enc._encode_windowed(a, purpose, {})  # short: the one-shot path
        for fb, wb in ((streaming.FRAME_BLOCK, streaming.WINDOW_BLOCK), (37, 5), (1, 1)):
            got = streaming.encode_windowed(enc, a, purpose, {}, frame_block=fb, window_block=wb)
            assert _same(ref, got) == [], (name, purpose, fb, wb)


def test_a_long_signal_takes_the_block_path_with_the_same_codes(enc, signals, monkeypatch):
    a = np.tile(signals["three gains"], 3)[: streaming.STREAM_SAMPLES + 16_000]  # 21 s
    calls = []
    real = streaming.encode_windowed
    monkeypatch.setattr(streaming, "encode_windowed",
                        lambda *args, **kw: calls.append(1) or real(*args, **kw))
    streamed = enc.encode_audio(a, purpose="query")
    assert calls == [1]
    monkeypatch.setattr(streaming, "STREAM_SAMPLES", 10 ** 12)  # the one-shot path
    one_shot = enc.encode_audio(a, purpose="query")
    assert calls == [1] and _same(one_shot, streamed) == []


def test_nearest_sorted_is_argmin_with_ties_to_the_lower_index():
    rng = np.random.default_rng(3)
    for _ in range(50):
        v = np.unique(rng.integers(-50, 500, rng.integers(1, 40)))
        t = rng.integers(-80, 600, 300)
        ref = np.abs(v[None, :] - t[:, None]).argmin(axis=1)
        assert np.array_equal(streaming.nearest_sorted(v, t), ref)
    assert list(streaming.nearest_sorted(np.array([0, 10]), np.array([5]))) == [0]  # a tie


def _sources(tmp_path, signals):
    """A WAV at the model rate, a stereo FLAC at 22.05 kHz (resampled) and a float WAV louder
    than full scale (scaled by its peak)."""
    import soundfile as sf

    y = np.tile(signals["three gains"], 2)
    sf.write(tmp_path / "a.wav", y, 16_000, subtype="PCM_16")
    sf.write(tmp_path / "b.flac", np.stack([y, y[::-1]], axis=1), 22_050, subtype="PCM_16")
    sf.write(tmp_path / "c.wav", y * 3.0, 16_000, subtype="FLOAT")
    return [tmp_path / n for n in ("a.wav", "b.flac", "c.wav")]


def test_a_decoded_signal_gives_load_audios_samples_slice_by_slice(tmp_path, signals):
    from hashing.audio import load_audio
    from hashing.lazy_signal import DecodedSignal

    rng = np.random.default_rng(4)
    for path in _sources(tmp_path, signals):
        ref = load_audio(str(path), 16_000)
        for source in (str(path), path.read_bytes(), open(path, "rb")):
            sig = DecodedSignal(source, 16_000, None)
            assert sig.shape == ref.shape
            lo = 0
            for _ in range(40):  # forward slices of any size, overlapping
                lo = min(ref.size - 1, lo + int(rng.integers(0, 30_000)))
                hi = lo + int(rng.integers(1, 70_000))
                assert np.array_equal(sig[lo:hi], ref[lo:hi]), (path.name, lo, hi)
            passes = sig.passes
            assert np.array_equal(sig[5:9000], ref[5:9000])  # backwards: decoded again
            assert sig.passes == passes + 1


def test_a_file_changed_between_passes_is_refused(tmp_path, signals):
    import soundfile as sf

    from hashing.lazy_signal import DecodedSignal
    from speechvault.errors import AudioDecodeError

    path = _sources(tmp_path, signals)[0]
    sig = DecodedSignal(str(path), 16_000, None)
    n = sig.shape[0]
    sf.write(path, np.zeros(n // 2, np.float32), 16_000)
    with pytest.raises(AudioDecodeError, match="changed while being read"):
        sig[0:n]


def test_a_long_file_is_coded_without_its_whole_signal_with_the_same_codes(enc, tmp_path,
                                                                           signals, monkeypatch):
    import soundfile as sf

    from hashing import lazy_signal
    from hashing.audio import load_audio

    monkeypatch.setattr(streaming, "LAZY_SAMPLES", 60 * 16_000)  # the 5-minute bar: at 60 s
    n = (60 * 16_000 + 16_000) * 22_050 // 16_000  # 61 s
    a = np.tile(signals["three gains"], 1 + n // signals["three gains"].size)[:n]
    sf.write(tmp_path / "long.wav", a, 22_050, subtype="PCM_16")  # resampled on decode
    made = []
    real = lazy_signal.DecodedSignal
    monkeypatch.setattr(lazy_signal, "DecodedSignal",
                        lambda *args, **kw: made.append(real(*args, **kw)) or made[-1])
    for purpose in ("store", "query"):
        got = enc.encode_file(str(tmp_path / "long.wav"), purpose=purpose)
        ref = enc.encode_audio(load_audio(str(tmp_path / "long.wav"), enc.sample_rate),
                               purpose=purpose)
        assert _same(ref, got) == [], purpose
    # three decodes each: the length, the features, the model windows (from the start again)
    assert [s.passes for s in made] == [3, 3]
