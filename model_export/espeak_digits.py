"""Spoken digits 0-9 synthesised by espeak-ng in many voices, speeds and pitches (issue 16).

Training uses only the FIT voices of ``model_export.long_speech`` and evaluation the TEST
voices; which voices go where is fixed there, not here. Every take draws its speed (words per
minute) and pitch (0-99) from a seeded generator, so a call is reproducible. The clips are
returned in memory (float32, 16 kHz, silence cut), never written into the repository.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from model_export.long_speech import synthesize

__all__ = ["DIGIT_WORDS", "DigitClip", "espeak_digit_clips"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclasses.dataclass(frozen=True)
class DigitClip:
    digit: int
    voice: str
    speed: int
    pitch: int
    audio: np.ndarray


def espeak_digit_clips(voices: Sequence[str], takes: int, *, seed: int,
                       speed_range: tuple[int, int] = (110, 200),
                       pitch_range: tuple[int, int] = (10, 90)) -> list[DigitClip]:
    """``takes`` clips of each digit in each voice; voices x 10 x takes clips in all."""
    rng = np.random.default_rng(seed)
    out = []
    for voice in voices:
        for d, word in enumerate(DIGIT_WORDS):
            for _ in range(int(takes)):
                s = int(rng.integers(speed_range[0], speed_range[1] + 1))
                p = int(rng.integers(pitch_range[0], pitch_range[1] + 1))
                out.append(DigitClip(d, voice, s, p, synthesize(word, voice, s, p)))
    return out
