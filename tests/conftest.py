"""Shared test fixtures (generic: any test module may use them).

* ``make_speech_like(...)`` / fixture ``speech_like``: a deterministic synthetic speech-like
  signal (voiced harmonic "syllables" with a formant envelope and pitch glide, a fricative-like
  noise burst, pauses and leading/trailing silence). numpy only.
* ``fsdd_dir``: the Free Spoken Digit Dataset folder ($SPEECHVAULT_FSDD, else
  ../shared/data/fsdd next to the repository); tests using it are skipped with the reason when
  it is absent.
* ``fsdd_file``: one FSDD recording (path), ``fsdd_files``: a small fixed selection.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# vowel formants (Hz) and bandwidths, roughly /a/, /i/, /u/, /e/
_VOWELS = (
    ((730, 1090, 2440), (90, 110, 170)),
    ((270, 2290, 3010), (60, 100, 170)),
    ((300, 870, 2240), (60, 100, 170)),
    ((530, 1840, 2480), (70, 100, 170)),
)


def make_speech_like(
    sr: int = 16_000,
    seconds: float = 1.0,
    *,
    seed: int = 0,
    f0: float = 130.0,
    syllables: int = 2,
    lead_silence: float = 0.1,
    trail_silence: float = 0.1,
    fricative: bool = True,
    peak: float = 0.5,
) -> np.ndarray:
    """Speech-like float32 signal of ``seconds`` total length at ``sr``.

    ``syllables`` voiced segments (harmonics of a gliding f0 shaped by a 3-formant envelope and
    a raised-cosine amplitude envelope) separated by short pauses; optionally a high-pass noise
    burst ("s") before the first one; ``lead_silence``/``trail_silence`` seconds of digital
    silence at the ends. Normalised to ``peak``. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    y = np.zeros(n, dtype=np.float64)
    a0 = int(round(lead_silence * sr))
    a1 = max(a0 + 1, n - int(round(trail_silence * sr)))
    active = a1 - a0
    fric_len = int(0.08 * sr) if fricative and active > int(0.3 * sr) else 0
    pause = int(0.05 * sr)
    syl_len = max(1, (active - fric_len - pause * (syllables - 1)) // max(1, syllables))
    pos = a0
    if fric_len:
        burst = rng.standard_normal(fric_len)
        burst = np.diff(burst, prepend=0.0)  # tilt towards high frequencies
        burst *= np.hanning(fric_len) * 0.15
        y[pos : pos + fric_len] += burst
        pos += fric_len
    for k in range(syllables):
        m = min(syl_len, n - pos)
        if m <= 0:
            break
        t = np.arange(m) / sr
        f0_t = f0 * (1.0 + 0.15 * np.sin(np.pi * t / max(t[-1], 1e-3)) + 0.1 * (rng.random() - 0.5))
        phase = 2 * np.pi * np.cumsum(f0_t) / sr
        formants, bws = _VOWELS[(seed + k) % len(_VOWELS)]
        seg = np.zeros(m)
        nyq = sr / 2.0
        for h in range(1, int(nyq * 0.9 / (f0 * 1.2)) + 1):
            fh = h * f0_t
            amp = np.zeros(m)
            for fc, bw in zip(formants, bws):
                amp += 1.0 / (1.0 + ((fh - fc) / bw) ** 2)
            amp *= 1.0 / h  # source tilt + lip radiation: about -6 dB/octave
            amp[fh >= nyq * 0.95] = 0.0
            seg += amp * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
        seg *= np.hanning(m) ** 0.5
        y[pos : pos + m] += seg
        pos += m + pause
    y[a1:] = 0.0
    y[:a0] = 0.0
    mx = np.max(np.abs(y))
    if mx > 0:
        y *= peak / mx
    return y.astype(np.float32)


@pytest.fixture
def speech_like():
    """Factory fixture: ``speech_like(sr=16000, seconds=1.0, seed=0, ...)`` -> float32 array."""
    return make_speech_like


def find_fsdd() -> Path | None:
    env = os.environ.get("SPEECHVAULT_FSDD")
    for cand in (env, REPO_ROOT.parent / "shared" / "data" / "fsdd"):
        if cand and Path(cand).is_dir() and any(Path(cand).glob("*/*.wav")):
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    d = find_fsdd()
    if d is None:
        pytest.skip("FSDD not found: set SPEECHVAULT_FSDD or place it at ../shared/data/fsdd")
    return d


@pytest.fixture(scope="session")
def fsdd_file(fsdd_dir: Path) -> Path:
    """A fixed FSDD recording (digit 3, first file in sorted order)."""
    files = sorted((fsdd_dir / "3").glob("*.wav")) or sorted(fsdd_dir.glob("*/*.wav"))
    return files[0]


@pytest.fixture(scope="session")
def fsdd_files(fsdd_dir: Path) -> list[Path]:
    """One recording per digit (take 0 of the first speaker that has it), sorted by digit."""
    out = []
    for d in range(10):
        files = sorted((fsdd_dir / str(d)).glob(f"{d}_*_0.wav")) or sorted((fsdd_dir / str(d)).glob("*.wav"))
        if files:
            out.append(files[0])
    return out
