"""model_export.espeak_digits.ESPEAK_EXTRA_FIT_VOICES: more training voices that keep the
espeak TEST and CALIB voices out of training, and that are really new voices (espeak-ng
ignores some variant names silently, so the audio is compared, not the names)."""

from __future__ import annotations

import hashlib

import pytest

from model_export import long_speech as ls
from model_export.espeak_digits import ESPEAK_EXTRA_FIT_VOICES

needs_espeak = pytest.mark.skipif(not ls.espeak_available(), reason="espeak-ng not installed")


def _variant(voice: str) -> str | None:
    return voice.split("+", 1)[1].lower() if "+" in voice else None


def _accent(voice: str) -> str:
    return voice.split("+", 1)[0]


def test_extra_voices_use_no_test_or_calib_variant_or_accent():
    held = ls.ESPEAK_TEST_VOICES + ls.ESPEAK_CALIB_VOICES
    held_variants = {_variant(v) for v in held} - {None}
    fit_accents = {_accent(v) for v in ls.ESPEAK_FIT_VOICES}
    for v in ESPEAK_EXTRA_FIT_VOICES:
        assert _variant(v) not in held_variants, v
        assert _accent(v) in fit_accents, v
    assert not set(ESPEAK_EXTRA_FIT_VOICES) & set(ls.ESPEAK_FIT_VOICES + held)
    assert len(set(ESPEAK_EXTRA_FIT_VOICES)) == len(ESPEAK_EXTRA_FIT_VOICES) >= 40


@needs_espeak
def test_every_extra_voice_sounds_unlike_every_other_voice():
    """Same word, speed and pitch: no extra voice gives the bytes of another extra, FIT, CALIB
    or TEST voice (e.g. "en-gb+m2" is plain en-gb in espeak-ng 1.51 and would fail here)."""
    def digest(voice):
        return hashlib.sha1(ls.synthesize("seven", voice, 160, 50).tobytes()).hexdigest()

    others = {digest(v): v for v in ls.ESPEAK_FIT_VOICES + ls.ESPEAK_CALIB_VOICES + ls.ESPEAK_TEST_VOICES}
    seen: dict[str, str] = {}
    for v in ESPEAK_EXTRA_FIT_VOICES:
        d = digest(v)
        assert d not in others, (v, others.get(d))
        assert d not in seen, (v, seen.get(d))
        seen[d] = v


@needs_espeak
def test_no_test_or_calib_voice_sounds_like_a_voice_it_must_not_be():
    """Held-out voices are held out by their sound, not their names: no TEST or CALIB voice
    gives the bytes of a FIT voice, of an extra FIT voice or of another held-out voice
    ("en-gb+paul", a TEST voice until session 22, was plain "en", a FIT voice)."""
    def digest(voice):
        return hashlib.sha1(ls.synthesize("seven", voice, 160, 50).tobytes()).hexdigest()

    fitted = {digest(v): v for v in ls.ESPEAK_FIT_VOICES + tuple(ESPEAK_EXTRA_FIT_VOICES)}
    held: dict[str, str] = {}
    for v in ls.ESPEAK_CALIB_VOICES + ls.ESPEAK_TEST_VOICES:
        d = digest(v)
        assert d not in fitted, (v, fitted.get(d))
        assert d not in held, (v, held.get(d))
        held[d] = v
