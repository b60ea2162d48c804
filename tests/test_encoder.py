"""hashing.encoder: the runtime path (no TensorFlow), the shipped default model, error cases."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from hashing.model_meta import ModelMeta
from speechvault.errors import ModelError, NotFoundError, RuntimeMissingError

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("tensorflow", "keras", "textual", "typer")


def _tone(seconds: float, sr: int = 16_000) -> np.ndarray:
    """A gliding, amplitude-modulated tone with a little noise (deterministic)."""
    rng = np.random.default_rng(1)
    t = np.arange(int(sr * seconds)) / sr
    f = 250 + 120 * np.sin(2 * np.pi * 0.9 * t)
    y = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (y + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def _default_present() -> bool:
    pkg = resources.files("hashing.models")
    return pkg.joinpath("default.tflite").is_file() and pkg.joinpath("default.json").is_file()


needs_default = pytest.mark.skipif(not _default_present(), reason="no shipped default model")


def test_runtime_imports_pull_in_no_tensorflow_textual_typer():
    code = (
        "import sys, importlib\n"
        "mods = ['hashing', 'hashing.encoder', 'hashing.codes', 'hashing.model_meta',\n"
        "        'hashing.features', 'hashing.audio', 'store']\n"
        "for m in mods: importlib.import_module(m)\n"
        "import hashing.encoder as e\n"
        "e.load_interpreter_class()\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"runtime path imported: {r.stdout.strip()}"


@needs_default
def test_encoding_with_default_model_does_not_import_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from hashing.encoder import Encoder\n"
        "enc = Encoder.default(num_threads=1)\n"
        "t = np.arange(16000) / 16000.0\n"
        "c = enc.encode_audio((0.3 * np.sin(2 * np.pi * 440 * t)).astype('float32'))\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(c.bits.shape[1], ','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    k, _, bad = r.stdout.strip().partition(" ")
    assert bad == "" and int(k) > 0


def test_missing_runtime_raises_runtime_missing(monkeypatch):
    import hashing.encoder as enc_mod

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith(("ai_edge_litert", "tflite_runtime")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(RuntimeMissingError, match="pip install ai-edge-litert"):
        enc_mod.load_interpreter_class()


@needs_default
def test_default_model_gives_K_bits_and_a_valid_category():
    from hashing.encoder import Encoder

    enc = Encoder.default(num_threads=1)
    meta = enc.meta
    assert meta.K == 384 and meta.C == 10 and meta.class_names == [str(i) for i in range(10)]
    assert meta.arch in ("cnn", "crnn")
    assert meta.training["held_out_speakers"]
    assert "CC BY-SA 4.0" in meta.training["license"]
    assert meta.training["command"].startswith(("python -m model_export.train",
                                                 "python -m model_export.loso"))
    assert enc.tflite_sha256 == meta.tflite_sha256 and enc.sha256 == meta.model_id(meta.tflite_sha256)
    assert len(enc.tflite_bytes) + len(enc.fingerprint_bytes or b"") <= 10 * 1024 * 1024
    rng = np.random.default_rng(0)
    t = np.arange(12000) / 16000.0
    y = (0.4 * np.sin(2 * np.pi * 300 * t) * np.hanning(len(t)) + 0.01 * rng.standard_normal(len(t)))
    c = enc.encode_audio(y.astype(np.float32))
    assert c.bits.shape == (1, enc.K) and c.bits.dtype == np.uint8
    assert c.words.shape == (1, (enc.K + 63) // 64) and c.words.dtype == np.uint64
    assert c.probs.shape == (1, 10)
    assert abs(float(c.probs.sum()) - 1.0) < 1e-4
    assert 0 <= int(c.category[0]) < 10 and int(c.category[0]) == int(np.argmax(c.probs[0]))
    # same audio, same code; +3 dB gain (a CPO) gives the same code (gain-invariant features)
    c2 = enc.encode_audio(y.astype(np.float32))
    np.testing.assert_array_equal(c.words, c2.words)
    c3 = enc.encode_audio((y * 10 ** (3 / 20)).astype(np.float32))
    from hashing.codes import ber

    assert ber(c.words[0], c3.words[0], enc.K) < 0.02


@needs_default
def test_default_model_on_a_long_recording_gives_consecutive_windows():
    from hashing.encoder import Encoder

    from tests.conftest import make_speech_like

    enc = Encoder.default()
    # continuous speech-like sound (syllables, no pauses) over a quiet noise floor: every
    # window is speech, none a pause or buried in noise
    rng = np.random.default_rng(1)
    y = make_speech_like(16000, 10.0, seed=1, syllables=40, lead_silence=0.0, trail_silence=0.0)
    y = (y + 1e-3 * rng.standard_normal(y.size)).astype(np.float32)
    c = enc.encode_audio(y)
    if enc.windowing is None:  # 1 s model windows, consecutive (the last may be end-aligned)
        hop, n = 1.0, 10
    else:  # identification windows every store hop (hashing.windowing)
        w = enc.windowing
        hop = w.store_hop_frames * w.frame_seconds
        n = int((10.0 - w.window_frames * w.frame_seconds) // hop) + 1
    assert abs(c.n_windows - n) <= 1
    assert c.bits.shape == (c.n_windows, enc.K)
    steps = np.diff(c.starts)
    assert np.all(steps > 0.5 * hop) and np.all(steps <= hop + 1e-9)
    assert c.starts[0] >= 0.0 and c.starts[-1] <= 9.0 + 1e-9
    assert c.timings["inference"] > 0
    if enc.windowing is not None and enc.windowing.min_snr_db > 0:
        # 10 s of white noise alone: nothing above its noise floor, so one window (the most
        # active) stands for it instead of 36 windows of noise that would look alike
        noise = (0.2 * rng.standard_normal(16000 * 10)).astype(np.float32)
        assert enc.encode_audio(noise).n_windows == 1


@needs_default
def test_model_mismatch_and_bad_files(tmp_path):
    from hashing.encoder import Encoder

    pkg = resources.files("hashing.models")
    blob = pkg.joinpath("default.tflite").read_bytes()
    meta = ModelMeta.from_json(pkg.joinpath("default.json").read_bytes())
    # bytes that do not match the metadata's sha256
    with pytest.raises(ModelError, match="does not match"):
        Encoder.from_bytes(blob + b"\0", meta)
    # metadata claiming another K than the model has
    d = meta.to_dict()
    d.pop("fingerprint", None)  # the TFLite checks alone
    d["K"], d["tflite_sha256"] = 128, ""
    with pytest.raises(ModelError, match="hash output shape"):
        Encoder.from_bytes(blob, ModelMeta.from_dict(d))
    # garbage model bytes
    d = meta.to_dict()
    d.pop("fingerprint", None)
    d["tflite_sha256"] = ""
    with pytest.raises(ModelError):
        Encoder.from_bytes(b"not a flatbuffer" * 10, ModelMeta.from_dict(d))
    # files
    with pytest.raises(NotFoundError):
        Encoder.from_files(tmp_path / "none.tflite")
    (tmp_path / "m.tflite").write_bytes(blob)
    with pytest.raises(ModelError, match="metadata not found"):
        Encoder.from_files(tmp_path / "m.tflite")
    (tmp_path / "m.json").write_text(json.dumps({"format": "speechvault-model/1", "name": "x"}))
    with pytest.raises(ModelError):
        Encoder.from_files(tmp_path / "m.tflite")
    with pytest.raises(Exception):
        Encoder.from_bytes(blob, meta, num_threads=0)


@needs_default
def test_shipped_models_load_by_name_and_code_alike():
    """Every shipped model loads by name, declares K = 384, and gives the same code twice."""
    from hashing.encoder import Encoder, shipped_models

    names = shipped_models()
    assert "default" in names and len(names) >= 2  # default + the other architecture
    archs = set()
    for name in names:
        enc = Encoder.shipped(name, num_threads=1)
        archs.add(enc.meta.arch)
        y = _tone(1.5)
        a, b = enc.encode_audio(y), enc.encode_audio(y)
        assert a.bits.shape[1] == enc.K and enc.meta.K == 384
        assert np.array_equal(a.words, b.words)
    assert {"cnn", "crnn"} <= archs  # issue 3: both architectures are exported
    with pytest.raises(NotFoundError, match="no shipped model"):
        Encoder.shipped("../default")


@needs_default
def test_ship_checks_sha_and_copies(tmp_path):
    """model_export.ship refuses bytes that do not match the metadata and copies what does."""
    from model_export.ship import ship

    pkg = resources.files("hashing.models")
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.tflite").write_bytes(pkg.joinpath("default.tflite").read_bytes())
    (src / "m.json").write_bytes(pkg.joinpath("default.json").read_bytes())
    fp = pkg.joinpath("default.fingerprint.npz")
    if fp.is_file():
        (src / "m.fingerprint.npz").write_bytes(fp.read_bytes())
    t, j = ship(src / "m.tflite", "x", dest_dir=tmp_path / "out")
    assert t.read_bytes() == (src / "m.tflite").read_bytes() and j.is_file()
    if fp.is_file():  # the fingerprint travels with the model
        assert (tmp_path / "out" / "x.fingerprint.npz").read_bytes() == fp.read_bytes()
    (src / "m.tflite").write_bytes(pkg.joinpath("default.tflite").read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match"):
        ship(src / "m.tflite", "y", dest_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "y.tflite").exists()


@needs_default
def test_a_take_is_classified_from_the_models_own_input_not_the_grid():
    """Issue 16: a word (a take) gets h1 and h2 from the model's own trimmed input
    (``features.model_windows``), as in training, wherever its identification windows lie; a
    windowing stored without the setting keeps the grid (model windows at identification
    window starts, with the noise around the word)."""
    import dataclasses

    from hashing.encoder import Encoder
    from hashing.features import model_windows

    enc = Encoder.default(num_threads=1)
    if enc.windowing is None or enc.windowing.model_input != "take":
        pytest.skip("the default model does not classify takes from their own input")
    rng = np.random.default_rng(3)
    t = np.arange(9000) / 16000.0
    word = 0.4 * np.sin(2 * np.pi * (200 + 300 * t) * t) * np.hanning(len(t))
    y = np.concatenate([np.zeros(7000), word, np.zeros(12000)]) + 0.003 * rng.standard_normal(28000)
    y = y.astype(np.float32)
    h, p = enc.run_windows(model_windows(y, enc._spec))
    for purpose in ("store", "query"):
        c = enc.encode_audio(y, purpose=purpose)
        assert np.allclose(c.probs, p[0], atol=1e-6), purpose
        assert np.all(c.category == int(np.argmax(p[0])))
    grid = dataclasses.replace(enc.windowing, model_input="grid")
    assert grid.model_input == "grid"
    from hashing.windowing import WindowingSpec

    assert WindowingSpec.from_dict({k: v for k, v in enc.windowing.to_dict().items()
                                    if k != "model_input"}).model_input == "grid"
