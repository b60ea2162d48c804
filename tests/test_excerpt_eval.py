"""Long held-out test recordings (model_export.long_speech), the Chromaprint baseline
(model_export.chromaprint) and the excerpt evaluation (model_export.excerpt_eval)."""

from __future__ import annotations

import numpy as np
import pytest

from hashing.cpo import resample_roundtrip, speed_change
from model_export import long_speech as ls

needs_espeak = pytest.mark.skipif(not ls.espeak_available(), reason="espeak-ng not installed")


def test_voice_splits_are_disjoint():
    fit, calib, test = set(ls.ESPEAK_FIT_VOICES), set(ls.ESPEAK_CALIB_VOICES), set(ls.ESPEAK_TEST_VOICES)
    assert not fit & calib and not fit & test and not calib & test
    spk = [set(ls.FSDD_FIT_SPEAKERS), set(ls.FSDD_CALIB_SPEAKERS), set(ls.FSDD_TEST_SPEAKERS)]
    assert not spk[0] & spk[1] and not spk[0] & spk[2] and not spk[1] & spk[2]
    # TEST voices share neither accent+variant nor variant with a FIT voice
    fit_variants = {v.split("+")[1].lower() for v in fit if "+" in v}
    assert not {v.split("+")[1].lower() for v in test} & fit_variants


@needs_espeak
def test_every_split_voice_exists_in_espeak():
    for v in ls.ESPEAK_FIT_VOICES + ls.ESPEAK_CALIB_VOICES + ls.ESPEAK_TEST_VOICES:
        ls._check_voice(v)
    with pytest.raises(ls.InvalidInputError):
        ls._check_voice("en+no-such-variant")


@needs_espeak
def test_espeak_recordings_deterministic_and_sized():
    a = ls.espeak_recordings(ls.ESPEAK_TEST_VOICES[:2], 2, seed=3, min_s=6, max_s=9)
    b = ls.espeak_recordings(ls.ESPEAK_TEST_VOICES[:2], 2, seed=3, min_s=6, max_s=9)
    assert [r.name for r in a] == [r.name for r in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.samples, y.samples)
        assert 6 <= x.seconds <= 9 and x.samples.dtype == np.float32
        assert np.abs(x.samples).max() <= 1.0
    assert a[0].voice != a[1].voice and a[0].parts != a[1].parts
    c = ls.espeak_recordings(ls.ESPEAK_TEST_VOICES[:2], 2, seed=4, min_s=6, max_s=9)
    assert c[0].parts != a[0].parts


def test_joined_pieces_take_their_gains_from_the_range_given():
    """``_join``'s gains (a calibration of recordings whose level varies asks +-15 dB): pieces
    of one level come out within the range's spread of each other, and the default range draws
    the same recording as before the range was a parameter (the same random numbers)."""
    tone = np.sin(np.arange(8000) * 0.05).astype(np.float32) * 0.5

    def levels(gain_db):
        y = ls._join([tone] * 12, 8.0, np.random.default_rng(7), gain_db)
        frames = y[: y.size // 400 * 400].reshape(-1, 400)
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        loud = rms[rms > 1e-6]
        return y, 20 * np.log10(loud.max() / np.percentile(loud, 5))

    default, spread3 = levels(ls.GAIN_RANGE_DB)
    np.testing.assert_array_equal(default, ls._join([tone] * 12, 8.0, np.random.default_rng(7)))
    _, spread15 = levels((-15.0, 15.0))
    assert spread3 <= 6.5 and 10.0 < spread15 <= 30.5


def test_fsdd_recordings_never_reuse_a_take(fsdd_dir):
    recs = ls.fsdd_recordings(fsdd_dir, ls.FSDD_TEST_SPEAKERS, 4, seed=1, min_s=20, max_s=30)
    takes = [t for r in recs for t in r.parts]
    assert len(takes) == len(set(takes)) and len(takes) > 4 * 15
    assert all("_theo_" in t for t in takes)
    assert all(20 <= r.seconds <= 30 for r in recs)
    again = ls.fsdd_recordings(fsdd_dir, ls.FSDD_TEST_SPEAKERS, 4, seed=1, min_s=20, max_s=30)
    np.testing.assert_array_equal(recs[2].samples, again[2].samples)


# --------------------------------------------------------------------------- Chromaprint

from model_export import chromaprint as cp  # noqa: E402
from model_export import excerpt_eval as ee  # noqa: E402

needs_fpcalc = pytest.mark.skipif(not cp.fpcalc_available(), reason="fpcalc not installed")


def test_popcount32_counts_bits():
    x = np.random.default_rng(0).integers(0, 2**32, size=500, dtype=np.uint64).astype(np.uint32)
    assert cp.popcount32(x).tolist() == [bin(int(v)).count("1") for v in x]


def test_index_finds_the_offset_of_a_noisy_excerpt():
    rng = np.random.default_rng(1)
    index = cp.ChromaprintIndex()
    prints = [rng.integers(0, 2**32, size=300, dtype=np.uint64).astype(np.uint32) for _ in range(5)]
    for i, fp in enumerate(prints):
        index.add(f"r{i}", fp)
    q = prints[3][120:150].copy()
    q ^= np.uint32(1) << rng.integers(0, 32, size=q.size).astype(np.uint32)  # one wrong bit each
    ranked = index.rank(q)
    assert ranked[0].name == "r3"
    assert ranked[0].ber == pytest.approx(1 / 32)
    assert ranked[0].offset == pytest.approx(120 * cp.HOP_SECONDS)
    assert all(m.ber > 0.3 for m in ranked[1:])  # unrelated prints: about half the bits differ
    assert index.rank(np.zeros(0, np.uint32)) == []


def test_threshold_accepts_no_impostor_or_the_allowed_share():
    bers = [0.30, 0.21, 0.40, 0.25, 0.33]
    t = cp.threshold_from_impostors(bers)
    assert t < 0.21 and t == pytest.approx(0.21)
    t2 = cp.threshold_from_impostors(bers, max_fmr=0.4)  # 2 of 5 may pass
    assert sum(b <= t2 for b in bers) == 2
    with pytest.raises(cp.InvalidInputError):
        cp.threshold_from_impostors([])


@needs_fpcalc
@needs_espeak
def test_fpcalc_prints_real_speech_and_finds_an_excerpt():
    rec = ls.espeak_recordings(ls.ESPEAK_CALIB_VOICES[:1], 1, seed=2, min_s=15, max_s=16)[0]
    other = ls.espeak_recordings(ls.ESPEAK_CALIB_VOICES[1:2], 1, seed=3, min_s=15, max_s=16)[0]
    index = cp.ChromaprintIndex()
    for r in (other, rec):
        index.add(r.name, cp.raw_fingerprint(r.samples, ls.SAMPLE_RATE))
    assert index.prints[1].size > 80  # ~8 sub-prints per second
    ex = rec.samples[7 * ls.SAMPLE_RATE : 12 * ls.SAMPLE_RATE]
    best = index.rank(cp.raw_fingerprint(ex, ls.SAMPLE_RATE))[0]
    assert best.name == rec.name and best.ber < 0.15
    assert abs(best.offset - 7.0) < 0.25
    assert cp.raw_fingerprint(rec.samples[: ls.SAMPLE_RATE], ls.SAMPLE_RATE).size == 0  # 1 s: no print


# --------------------------------------------------------------------------- excerpt evaluation


def _rec(seconds: float = 8.0) -> ls.LongRecording:
    rng = np.random.default_rng(5)
    y = (0.1 * rng.standard_normal(int(seconds * ls.SAMPLE_RATE))).astype(np.float32)
    y = resample_roundtrip(y, ls.SAMPLE_RATE, 2000)  # < 1 kHz: sub-sample alignment does not matter
    return ls.LongRecording("r", "test", "noise", y)


def test_cut_clean_is_the_plain_excerpt():
    rec = _rec()
    z = ee._cut(rec, 2.5, 3.0, ee.CONDITIONS["clean"], np.random.default_rng(0), ())
    np.testing.assert_array_equal(z, rec.samples[40000:88000])


@pytest.mark.parametrize("name", ["speed_0.97", "speed_1.03"])
def test_cut_speed_starts_at_the_same_content(name):
    """A sped-up copy's excerpt begins where the original excerpt begins: the first samples
    equal the speed-changed original at that point."""
    rec = _rec()
    cond = ee.CONDITIONS[name]
    z = ee._cut(rec, 2.5, 3.0, cond, np.random.default_rng(0), ())
    whole = cpo_speed(rec.samples, cond.speed)
    i = int(round(2.5 * ls.SAMPLE_RATE / cond.speed))
    ref = whole[i : i + z.size]
    assert z.size == 3 * ls.SAMPLE_RATE
    assert np.corrcoef(z[1000:-1000], ref[1000:-1000])[0, 1] > 0.99


def cpo_speed(y, factor):
    return speed_change(y, ls.SAMPLE_RATE, factor)


def test_cell_metrics_count_what_they_say():
    qs = [ee.Query("excerpt", 3.0, "clean", "a", 1.0, e) for e in "abcd"]
    answers = [
        ee.Answer(["a"], "a", 1.2),          # right, ranked first
        ee.Answer(["x", "b"], "x", 4.0),     # right reported second: not recall, half precision
        ee.Answer([], "c", None),            # nothing reported, nearest right
        ee.Answer(["y"], "y", None),         # wrong match
    ]
    c = ee._cell(qs, answers)
    assert c["recall"] == 0.25 and c["top1"] == 0.5
    assert c["precision"] == pytest.approx(2 / 4)
    assert c["offset_n"] == 2 and c["offset_err_median_s"] == pytest.approx((0.2 + 3.0) / 2)
    fm = ee._false_matches(qs, answers)
    assert fm["false_matches"] == 3 and fm["fmr"] == 0.75


@needs_fpcalc
@needs_espeak
def test_quick_eval_report(tmp_path):
    """The CI-sized run end to end through the CLI: report files, every cell, rates in [0, 1]."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "120", "TERM": "dumb"}
    r = subprocess.run([sys.executable, "-m", "cli", "eval-identify", "--quick", "--out", str(tmp_path)],
                       cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "excerpts.json").read_text())
    md = (tmp_path / "excerpts.md").read_text()
    assert rep["quick"] is True and rep["model"]["sha256"] and rep["command"].startswith("speechvault eval-identify")
    cfg = ee.EvalConfig.quick()
    cells = {(c["length"], c["condition"]) for c in rep["excerpts"]}
    assert cells == {(L, c) for L in cfg.lengths for c in cfg.conditions}
    for c in rep["excerpts"] + rep["clips"]:
        for system in ("speechvault", "chromaprint"):
            s = c[system]
            assert s["n"] == (cfg.excerpts_per_recording * cfg.espeak_in if c in rep["excerpts"] else cfg.clips)
            for key in ("recall", "top1"):
                assert 0.0 <= s[key] <= 1.0
            assert s["precision"] is None or 0.0 <= s["precision"] <= 1.0
            assert s["recall"] <= s["top1"]  # recall also needs the right one ranked first
    out = rep["outside"]
    assert out["speechvault"]["n"] == cfg.espeak_out * len(cfg.lengths) * len(cfg.conditions)
    assert 0.0 <= out["speechvault"]["fmr"] <= 1.0 and 0.0 <= out["chromaprint"]["fmr"] <= 1.0
    assert {c["condition"] for c in rep["clips"]} == set(ee.CLIP_CONDITIONS)
    assert "## 3 s excerpts" in md and "Chromaprint" in md and rep["model"]["name"] in md


def test_eval_identify_missing_data_dir_is_one_error_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "TERM": "dumb"}
    r = subprocess.run([sys.executable, "-m", "cli", "eval-identify", "--data", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "o")], cwd=root, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "nope" in lines[-1]


@pytest.mark.parametrize("name,snr", [("noise_10dB", 10.0), ("noise_20dB", 20.0),
                                      ("babble_10dB", 10.0)])
def test_cut_noise_is_at_the_excerpts_own_snr(name, snr):
    """A quiet excerpt next to a loud take gets noise at the condition's SNR of the excerpt
    itself, not of the excerpt plus the loud context (which put such queries near -10 dB)."""
    rec = _rec()
    loud = rec.samples.copy()
    loud[int(1.6 * ls.SAMPLE_RATE):int(2.4 * ls.SAMPLE_RATE)] *= 30.0  # in the context only
    rec = ls.LongRecording("r", "test", "noise", np.clip(loud, -1.0, 1.0))
    talkers = [(0.1 * np.random.default_rng(k).standard_normal(3 * ls.SAMPLE_RATE)
                ).astype(np.float32) for k in (1, 2, 3)]
    clean = ee._cut(rec, 2.5, 3.0, ee.CONDITIONS["clean"], np.random.default_rng(0), ())
    noisy = ee._cut(rec, 2.5, 3.0, ee.CONDITIONS[name], np.random.default_rng(0), talkers)
    c = clean.astype(np.float64)
    got = 10.0 * np.log10(np.mean(c ** 2) / np.mean((noisy - c) ** 2))
    assert noisy.shape == clean.shape
    assert abs(got - snr) < 0.3
