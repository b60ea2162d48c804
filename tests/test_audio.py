"""hashing.audio: decoding, mixdown, resampling, and one-line errors for bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from hashing.audio import AudioInfo, load_audio, read_info, write_wav
from speechvault.errors import AudioDecodeError, NotFoundError, SpeechVaultError


def tone(sr: int, seconds: float, f: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def assert_one_line_error(exc: SpeechVaultError, name: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and name in msg


def test_resample_8k_to_16k_length(tmp_path):
    p = tmp_path / "a.wav"
    y8 = tone(8000, 0.5)
    write_wav(p, y8, 8000)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 2 * len(y8)) <= 1
    # the tone survives: 440 Hz peak in the spectrum
    spec = np.abs(np.fft.rfft(y))
    assert np.fft.rfftfreq(len(y), 1 / 16000)[np.argmax(spec)] == pytest.approx(440, abs=3)
    assert np.abs(y).max() <= 1.0


def test_no_resample_keeps_samples(tmp_path):
    p = tmp_path / "f.wav"
    y = tone(16000, 0.3)
    write_wav(p, y, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(p), y)
    assert len(load_audio(p, sample_rate=None)) == len(y)


def test_bytes_equals_path(tmp_path, fsdd_file):
    a = load_audio(fsdd_file)
    b = load_audio(fsdd_file.read_bytes())
    c = load_audio(str(fsdd_file))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    info = read_info(fsdd_file)
    assert info == read_info(fsdd_file.read_bytes())
    assert info.sample_rate == 8000 and info.channels == 1 and info.format == "WAV"
    assert abs(len(a) - 2 * info.frames) <= 1


def test_multichannel_mixdown(tmp_path):
    p = tmp_path / "st.wav"
    left = tone(16000, 0.2, 300)
    right = tone(16000, 0.2, 700, amp=0.25)
    sf.write(p, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p), (left + right) / 2, atol=1e-7)
    assert read_info(p).channels == 2
    p4 = tmp_path / "quad.wav"
    sf.write(p4, np.stack([left, left, -left, -left], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p4), 0.0, atol=1e-7)


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_compressed_formats_from_bytes(fmt, subtype, speech_like):
    y = speech_like(sr=16000, seconds=0.8, seed=1)
    buf = io.BytesIO()
    sf.write(buf, y, 16000, format=fmt, subtype=subtype)
    data = buf.getvalue()
    z = load_audio(data)
    assert read_info(data).format == fmt
    assert abs(len(z) - len(y)) <= 1200  # lossy codecs may pad a frame
    m = min(len(y), len(z))
    assert np.corrcoef(y[:m], z[:m])[0, 1] > 0.9


def test_float_file_above_full_scale_is_scaled(tmp_path):
    p = tmp_path / "loud.wav"
    y = tone(16000, 0.1, amp=4.0)
    write_wav(p, y, 16000, subtype="FLOAT")
    z = load_audio(p)
    assert np.abs(z).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(z, y / 4.0, atol=1e-6)


def test_read_info_fields(tmp_path):
    p = tmp_path / "i.wav"
    write_wav(p, tone(22050, 1.0), 22050)
    info = read_info(p)
    assert isinstance(info, AudioInfo)
    assert (info.sample_rate, info.channels, info.frames, info.subtype) == (22050, 1, 22050, "PCM_16")
    assert info.duration == pytest.approx(1.0)
    assert info.to_dict()["format"] == "WAV"


def test_write_wav_buffer_roundtrip():
    buf = io.BytesIO()
    y = tone(16000, 0.25)
    write_wav(buf, y, 16000)
    z = load_audio(buf.getvalue())
    assert np.abs(z - y).max() <= 1.0 / 32768 + 1e-7


# ----------------------------------------------------------------------------- errors


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(p)
    assert_one_line_error(ei.value, "empty.wav")
    with pytest.raises(AudioDecodeError):
        load_audio(b"")
    with pytest.raises(AudioDecodeError):
        read_info(p)


def test_text_file(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(p)
    assert_one_line_error(ei.value, "notes.wav")
    with pytest.raises(AudioDecodeError):
        load_audio(b"\x00\x01garbage" * 100)


def test_zero_frame_wav(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
    assert p.stat().st_size > 0
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(p)
    assert_one_line_error(ei.value, "zero.wav")
    with pytest.raises(AudioDecodeError):
        read_info(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_float_wav(tmp_path, bad):
    p = tmp_path / "nan.wav"
    y = tone(16000, 0.1)
    y[100] = bad
    sf.write(p, y, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(p)
    assert_one_line_error(ei.value, "nan.wav")


def test_absurd_sample_rate(tmp_path):
    p = tmp_path / "slow.wav"
    sf.write(p, tone(100, 1.0, f=10), 100, subtype="PCM_16")
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(p)
    assert "sample rate" in str(ei.value)


def test_max_seconds_guard(tmp_path):
    p = tmp_path / "long.wav"
    write_wav(p, np.zeros(8000 * 5, np.float32), 8000)
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(p, max_seconds=2.0)
    assert_one_line_error(ei.value, "long.wav")
    assert len(load_audio(p, max_seconds=None)) == 16000 * 5


def test_missing_and_directory(tmp_path):
    with pytest.raises(NotFoundError):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioDecodeError):
        load_audio(tmp_path)
