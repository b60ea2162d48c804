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

__all__ = ["DIGIT_WORDS", "DigitClip", "espeak_digit_clips", "ESPEAK_EXTRA_FIT_VOICES"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: More training voices (issue 16, "many more synthetic voices"): the FIT accents en and en-us
#: with every espeak-ng variant that no list of ``long_speech`` uses, plus the FIT variants
#: moved onto en-us. No TEST or CALIB variant appears here (a test checks), and variants named
#: after a TEST one (edward2, anikaRobot, RicishayMax) are left out, as are the robot/effect
#: voices (robosoft*, UniRobot, Demonic, announcer, fast), and caleb and klatt6, which sound the
#: same as klatt (the test compares the audio). Not "en-gb+...": espeak-ng 1.51
#: resolves every en-gb+variant to plain en-gb (= en), the variant is ignored.
ESPEAK_EXTRA_FIT_VOICES: tuple[str, ...] = (
    "en+Andrea", "en-us+AnxiousAndy", "en+Diogo", "en-us+Gene", "en+Gene2", "en-us+Henrique",
    "en+Hugo", "en-us+Jacky", "en+Lee", "en-us+Marco", "en+Mario", "en-us+Michael",
    "en+Nguyen", "en-us+Storm", "en+Tweaky", "en-us+antonio", "en+boris",
    "en+ed", "en-us+gustave", "en+iven2", "en-us+iven3", "en+iven4", "en-us+kaukovalta",
    "en-us+marcelo", "en+miguel", "en-us+norbert", "en+pablo", "en-us+pedro",
    "en+sandro", "en-us+steph2", "en+steph3", "en-us+grandpa", "en+whisperf",
    "en-us+m1", "en-us+m2", "en-us+m4", "en-us+m5", "en-us+m6", "en-us+m7",
    "en-us+f1", "en-us+f2", "en-us+f4", "en-us+f5", "en-us+klatt", "en-us+klatt4",
)


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
