"""Long test recordings made from speech that no model fitting ever sees (issue 12).

Excerpt retrieval must be judged on recordings of 30-60 s, the length of a voice memo or a
piece of a call, in voices that neither trained nor calibrated the model. Two deterministic
(seeded) builders make them:

* :func:`fsdd_recordings`: takes of held-out FSDD speakers joined with random pauses
  (0.15-0.8 s) and random gain (+-3 dB per take); no take is used twice within one call, so
  recordings built by one call never share content.
* :func:`espeak_recordings`: espeak-ng reading random English-like sentences (a built-in
  vocabulary, a seeded RNG), one voice, speed and pitch per recording, sentences joined the
  same way.

:func:`espeak_word_clips` makes whole 1 s clips of single words (the "whole clip" test).

The voice split is fixed here, in one place, so fitting code and evaluation agree on it:

=================  ==========================================  ===============================
split              FSDD speakers                               espeak-ng voices
=================  ==========================================  ===============================
FIT                george, jackson, lucas, yweweler            :data:`ESPEAK_FIT_VOICES`
CALIB              nicolas                                     :data:`ESPEAK_CALIB_VOICES`
TEST               theo                                        :data:`ESPEAK_TEST_VOICES`
=================  ==========================================  ===============================

FIT voices may train or fit a model; CALIB voices set thresholds (tau, the Chromaprint BER
limit); TEST voices are never used for either. The espeak FIT set contains the 17 voices of
``tools/make_espeak_digits.sh`` except en+m3 and en+f3 (which earlier recipes held out for
calibration, so they are CALIB here). TEST voices combine accents and voice variants that
appear in neither FIT nor CALIB. Everything is mono float32 at 16 kHz.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
import soxr

from speechvault.errors import InvalidInputError, NotFoundError, RuntimeMissingError

__all__ = [
    "SAMPLE_RATE", "FSDD_FIT_SPEAKERS", "FSDD_CALIB_SPEAKERS", "FSDD_TEST_SPEAKERS",
    "ESPEAK_FIT_VOICES", "ESPEAK_CALIB_VOICES", "ESPEAK_TEST_VOICES", "VOCABULARY",
    "LongRecording", "espeak_available", "fsdd_recordings", "espeak_recordings",
    "espeak_word_clips", "random_sentence", "write_wav",
]

SAMPLE_RATE = 16000

FSDD_FIT_SPEAKERS: tuple[str, ...] = ("george", "jackson", "lucas", "yweweler")
FSDD_CALIB_SPEAKERS: tuple[str, ...] = ("nicolas",)
FSDD_TEST_SPEAKERS: tuple[str, ...] = ("theo",)

#: espeak-ng voices (``LANGUAGE+VARIANT``) a model may be trained or fitted on.
ESPEAK_FIT_VOICES: tuple[str, ...] = (
    "en", "en-us", "en-gb",
    "en+m1", "en+m2", "en+m4", "en+m5", "en+m6", "en+m7",
    "en+f1", "en+f2", "en+f4", "en+f5", "en+croak", "en+whisper",
    "en+klatt", "en+klatt4", "en-us+Andy", "en+Annie", "en+benjamin", "en+aunty",
    "en-gb+Denis", "en+grandma", "en+iven", "en+steph", "en-us+travis", "en+rob",
)
#: espeak-ng voices for threshold calibration only (never fitted on, never tested on).
ESPEAK_CALIB_VOICES: tuple[str, ...] = (
    "en+m3", "en+f3", "en+klatt5", "en-us+Alex", "en+belinda", "en+david",
    "en-gb-x-gbclan+Mike", "en-029+shelby",
)
#: espeak-ng voices for evaluation only: accents and variants in neither list above. espeak-ng
#: 1.51 ignores the variant of a plain ``en-gb+...`` voice (it speaks as ``en``), so none is
#: here: "en-gb+paul" was ``en``, a FIT voice, until session 22 (a test compares the audio).
ESPEAK_TEST_VOICES: tuple[str, ...] = (
    "en-029+m8", "en-us-nyc+klatt3", "en-gb-x-rp+Alicia", "en-gb-scotland+john",
    "en-gb-x-gbclan+edward", "en-gb-x-gbcwmd+linda", "en+klatt2", "en-us+max",
    "en+paul", "en-us+quincy", "en+robert", "en-gb-x-rp+zac",
    "en-us-nyc+victor", "en+anika", "en+adam", "en-029+michel",
)

#: Pauses between joined takes or sentences, seconds (uniform).
PAUSE_RANGE_S = (0.15, 0.8)
#: Gain of each take or sentence, dB (uniform).
GAIN_RANGE_DB = (-3.0, 3.0)
#: espeak-ng speed (words per minute) and pitch (0-99) ranges, one draw per recording.
ESPEAK_SPEED_WPM = (130, 185)
ESPEAK_PITCH = (25, 75)
#: Peak level of the finished recordings (dBFS): loud, never clipped.
PEAK_DBFS = -1.0

VOCABULARY: tuple[str, ...] = tuple("""
the a an this that these those my your his her our their some any every each no other another
one two three four five six seven eight nine ten first last next many few more most all both
man woman child people friend family mother father brother sister teacher doctor driver farmer
house home room door window table chair bed kitchen garden street road city town village country
school office shop market station bridge river lake sea mountain hill forest field park island
car bus train boat plane bicycle ticket letter book paper pen phone computer picture song story
water bread milk coffee tea apple orange rice soup cheese meat fish egg sugar salt dinner lunch
morning evening night day week month year hour minute moment time summer winter spring autumn
weather rain snow wind sun moon star sky cloud fire stone tree flower grass bird dog cat horse
money price job work game team plan idea question answer problem reason result change place
name word number line side end part point way world life hand head face eye voice heart mind
go come make take give get see look find think know tell ask say show call try leave put keep
bring begin feel seem turn move live play run walk talk read write sing open close buy sell pay
send wait stay stand sit hold carry follow learn teach help need want like love hope believe
remember forget understand explain decide choose build break fix clean cook drink eat sleep
good new old great big small long short high low early late young right left strong weak warm
cold hot cool dark bright quiet loud happy sad busy free easy hard heavy light clear simple
quick slow green blue red white black yellow brown full empty rich poor kind careful tired
always never often sometimes usually again already still soon today tomorrow yesterday here
there now then very really quite almost only also just even perhaps together outside inside
and but or so because when while after before until if although since
in on at by with from into over under between through across along around behind near without
about against during toward above below beside
""".split())

_TAKE_RE = re.compile(r"^(?P<digit>\d+)_(?P<speaker>.+)_(?P<take>\d+)\.wav$")


@dataclasses.dataclass(frozen=True)
class LongRecording:
    """A built recording: its samples (float32, 16 kHz) and where they came from."""

    name: str
    source: str  # "fsdd" or "espeak"
    voice: str  # FSDD speaker or espeak-ng voice
    samples: np.ndarray = dataclasses.field(repr=False)
    parts: tuple[str, ...] = dataclasses.field(default=(), repr=False)  # takes or sentences

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / SAMPLE_RATE


# --------------------------------------------------------------------------- joining


def _join(pieces: Iterable[np.ndarray], target_s: float, rng: np.random.Generator,
          gain_db: tuple[float, float] = GAIN_RANGE_DB) -> np.ndarray:
    """Concatenate pieces with a random pause before each (a random gain in ``gain_db`` each)
    until ``target_s`` is reached; the result is cut to exactly ``target_s`` and
    peak-normalised."""
    target = int(round(target_s * SAMPLE_RATE))
    out: list[np.ndarray] = []
    n = 0
    for piece in pieces:
        pause = np.zeros(int(rng.uniform(*PAUSE_RANGE_S) * SAMPLE_RATE), np.float32)
        gain = np.float32(10.0 ** (rng.uniform(*gain_db) / 20.0))
        out += [pause, piece.astype(np.float32) * gain]
        n += pause.shape[0] + piece.shape[0]
        if n >= target:
            break
    if n < target:
        raise InvalidInputError(f"not enough speech for a {target_s:.0f} s recording")
    y = np.concatenate(out)[:target]
    peak = float(np.max(np.abs(y)))
    return (y * np.float32(10.0 ** (PEAK_DBFS / 20.0) / peak)).astype(np.float32) if peak > 0 else y


def _to_rate(y: np.ndarray, sr: int) -> np.ndarray:
    y = np.asarray(y, np.float32)
    if y.ndim > 1:
        y = y.mean(axis=1).astype(np.float32)
    if sr == SAMPLE_RATE:
        return y
    return np.asarray(soxr.resample(y, sr, SAMPLE_RATE, quality="HQ"), np.float32)


def _trim_silence(y: np.ndarray, rel_db: float = -40.0) -> np.ndarray:
    """Cut leading and trailing samples quieter than ``rel_db`` below the peak (10 ms frames)."""
    if y.size == 0:
        return y
    frame = SAMPLE_RATE // 100
    n = y.shape[0] // frame
    if n == 0:
        return y
    rms = np.sqrt(np.mean(np.square(y[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10.0 ** (rel_db / 20.0))
    if loud.size == 0:
        return y[:0]
    return y[loud[0] * frame : (loud[-1] + 1) * frame]


def _durations(n: int, rng: np.random.Generator, min_s: float, max_s: float) -> list[float]:
    if not 0 < min_s <= max_s:
        raise InvalidInputError("recording lengths need 0 < min_s <= max_s")
    return [float(rng.uniform(min_s, max_s)) for _ in range(n)]


# --------------------------------------------------------------------------- FSDD


def _fsdd_takes(fsdd_dir: Path, speakers: Sequence[str]) -> list[Path]:
    wanted = set(speakers)
    files = sorted(p for p in fsdd_dir.glob("*/*.wav")
                   if (m := _TAKE_RE.match(p.name)) and m["speaker"] in wanted)
    if not files:
        raise NotFoundError(f"{fsdd_dir}: no FSDD takes of {', '.join(speakers)}")
    return files


def fsdd_recordings(fsdd_dir: str | Path, speakers: Sequence[str] = FSDD_TEST_SPEAKERS, n: int = 8,
                    *, seed: int = 0, min_s: float = 30.0, max_s: float = 60.0,
                    prefix: str = "fsdd",
                    gain_db: tuple[float, float] = GAIN_RANGE_DB) -> list[LongRecording]:
    """``n`` recordings of ``min_s``-``max_s`` s, each one speaker's takes in random order.

    Takes are drawn without replacement over the whole call: no take appears in two recordings.
    Raises InvalidInputError when the speakers have too few takes for ``n`` recordings."""
    rng = np.random.default_rng(seed)
    files = _fsdd_takes(Path(fsdd_dir), speakers)
    by_speaker: dict[str, list[Path]] = {}
    for p in files:
        by_speaker.setdefault(_TAKE_RE.match(p.name)["speaker"], []).append(p)
    pools = {s: [ps[i] for i in rng.permutation(len(ps))] for s, ps in sorted(by_speaker.items())}
    order = sorted(pools)
    out = []
    for i, target in enumerate(_durations(n, rng, min_s, max_s)):
        spk = order[i % len(order)]
        pool = pools[spk]
        used: list[str] = []

        def takes():
            while pool:
                p = pool.pop()
                used.append(p.name)
                y, sr = sf.read(p, dtype="float32", always_2d=False)
                yield _trim_silence(_to_rate(y, sr))

        y = _join(takes(), target, rng, gain_db)
        out.append(LongRecording(f"{prefix}-{spk}-{i:03d}", "fsdd", spk, y, tuple(used)))
    return out


# --------------------------------------------------------------------------- espeak-ng


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _espeak_exe() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeMissingError("espeak-ng not found: install the Debian package espeak-ng")
    return exe


@functools.lru_cache(maxsize=1)
def _espeak_variants() -> frozenset[str]:
    """Voice variant names espeak-ng knows (``espeak-ng --voices=variant``); an unknown variant
    would silently fall back to the default voice, so names are checked against this."""
    out = subprocess.run([_espeak_exe(), "--voices=variant"], capture_output=True, text=True, check=False)
    names = set()
    for line in out.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            names.add(cols[4].split("/")[-1].lower())
    return frozenset(names)


def _check_voice(voice: str) -> None:
    if "+" in voice and voice.split("+", 1)[1].lower() not in _espeak_variants():
        raise InvalidInputError(f"espeak-ng has no voice variant {voice.split('+', 1)[1]!r}")


def synthesize(text: str, voice: str, speed: int = 160, pitch: int = 50) -> np.ndarray:
    """espeak-ng reading ``text`` (float32, 16 kHz, leading/trailing silence cut)."""
    _check_voice(voice)
    with tempfile.TemporaryDirectory(prefix="sv-espeak-") as tmp:
        wav = Path(tmp) / "out.wav"
        proc = subprocess.run([_espeak_exe(), "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)),
                               "-w", str(wav), text], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not wav.exists():
            raise InvalidInputError(f"espeak-ng failed for voice {voice}: {proc.stderr.strip()[:200]}")
        y, sr = sf.read(wav, dtype="float32", always_2d=False)
    return _trim_silence(_to_rate(y, sr))


def random_sentence(rng: np.random.Generator, min_words: int = 5, max_words: int = 13) -> str:
    """A sentence of random vocabulary words: English sounds and rhythm, no repeated content."""
    k = int(rng.integers(min_words, max_words + 1))
    words = [VOCABULARY[int(i)] for i in rng.integers(len(VOCABULARY), size=k)]
    return " ".join(words).capitalize() + "."


def espeak_recordings(voices: Sequence[str] = ESPEAK_TEST_VOICES, n: int = 16, *, seed: int = 0,
                      min_s: float = 30.0, max_s: float = 60.0, prefix: str = "espeak",
                      gain_db: tuple[float, float] = GAIN_RANGE_DB) -> list[LongRecording]:
    """``n`` recordings, voice ``i % len(voices)``; speed, pitch and every sentence drawn from
    ``seed``. Sentences are synthesised one by one and joined like FSDD takes."""
    if not voices:
        raise InvalidInputError("no espeak-ng voices given")
    rng = np.random.default_rng(seed)
    out = []
    for i, target in enumerate(_durations(n, rng, min_s, max_s)):
        voice = voices[i % len(voices)]
        speed = int(rng.integers(ESPEAK_SPEED_WPM[0], ESPEAK_SPEED_WPM[1] + 1))
        pitch = int(rng.integers(ESPEAK_PITCH[0], ESPEAK_PITCH[1] + 1))
        said: list[str] = []

        def sentences():
            while True:
                s = random_sentence(rng)
                said.append(s)
                yield synthesize(s, voice, speed, pitch)

        y = _join(sentences(), target, rng, gain_db)
        out.append(LongRecording(f"{prefix}-{_tag(voice)}-{i:03d}", "espeak", voice, y, tuple(said)))
    return out


def espeak_word_clips(voices: Sequence[str] = ESPEAK_TEST_VOICES, n: int = 300, *, seed: int = 0,
                      seconds: float = 1.0, prefix: str = "word") -> list[LongRecording]:
    """``n`` whole clips of exactly ``seconds``: one vocabulary word each (voice ``i % len``,
    random speed and pitch), starting 50 ms in, cut at ``seconds`` if longer. No (word, voice)
    pair repeats, so no two clips are the same speech."""
    rng = np.random.default_rng(seed)
    length = int(round(seconds * SAMPLE_RATE))
    pad = SAMPLE_RATE // 20
    seen: set[tuple[str, str]] = set()
    out = []
    for i in range(n):
        voice = voices[i % len(voices)]
        word = VOCABULARY[int(rng.integers(len(VOCABULARY)))]
        while (word, voice) in seen:
            word = VOCABULARY[int(rng.integers(len(VOCABULARY)))]
        seen.add((word, voice))
        speed = int(rng.integers(ESPEAK_SPEED_WPM[0], ESPEAK_SPEED_WPM[1] + 1))
        pitch = int(rng.integers(ESPEAK_PITCH[0], ESPEAK_PITCH[1] + 1))
        y = synthesize(word, voice, speed, pitch)[: length - pad]
        clip = np.zeros(length, np.float32)
        clip[pad : pad + y.shape[0]] = y * np.float32(10.0 ** (PEAK_DBFS / 20.0) / max(1e-9, float(np.abs(y).max())))
        out.append(LongRecording(f"{prefix}-{_tag(voice)}-{i:03d}-{word}", "espeak", voice, clip, (word,)))
    return out


def _tag(voice: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", voice.replace("+", "-")).lower()


def write_wav(rec: LongRecording, directory: str | Path) -> Path:
    """Write ``rec`` as 16-bit PCM WAV ``directory/<name>.wav`` (what a user would store)."""
    path = Path(directory) / f"{rec.name}.wav"
    sf.write(path, rec.samples, SAMPLE_RATE, subtype="PCM_16")
    return path
