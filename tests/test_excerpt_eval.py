"""Long held-out test recordings (model_export.long_speech), the Chromaprint baseline
(model_export.chromaprint) and the excerpt evaluation (model_export.excerpt_eval)."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_fsdd_recordings_never_reuse_a_take(fsdd_dir):
    recs = ls.fsdd_recordings(fsdd_dir, ls.FSDD_TEST_SPEAKERS, 4, seed=1, min_s=20, max_s=30)
    takes = [t for r in recs for t in r.parts]
    assert len(takes) == len(set(takes)) and len(takes) > 4 * 15
    assert all("_theo_" in t for t in takes)
    assert all(20 <= r.seconds <= 30 for r in recs)
    again = ls.fsdd_recordings(fsdd_dir, ls.FSDD_TEST_SPEAKERS, 4, seed=1, min_s=20, max_s=30)
    np.testing.assert_array_equal(recs[2].samples, again[2].samples)
