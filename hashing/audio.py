"""Decode any audio soundfile reads into float32 mono at one sample rate.

``load_audio`` is the single entry point from bytes/paths to samples for the whole project
(ingest, query, training, evaluation). It

* decodes everything libsndfile reads (WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...) from a path
  or from bytes (via ``io.BytesIO``), and M4A/AAC (phone voice memos) through PyAV when the
  ``m4a`` extra is installed (``hashing.av_audio``; recognised by its first bytes);
* reads in blocks, mixes each block to mono (mean of the channels) and resamples it with a
  streaming soxr resampler (quality "HQ"), so memory is bounded by the *output* size and a file
  longer than ``max_seconds`` is rejected before it is read to the end;
* rejects empty files, non-audio files, zero-frame files, absurd sample rates and NaN/inf
  samples with a one-line ``AudioDecodeError`` naming the file.

Float files whose peak exceeds 1.0 are scaled down by their peak (so the result is always in
[-1, 1]; the features are gain invariant, so this never changes a code). Integer PCM is
decoded by libsndfile to [-1, 1) already.

Runtime dependencies: numpy, soundfile, soxr (never librosa/scipy).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf
import soxr

from hashing.av_audio import AvAudio, is_mp4_or_adts, open_av
from hashing.quiet import quiet_decoder
from speechvault import paper
from speechvault.errors import AudioDecodeError, InvalidInputError, NotFoundError

__all__ = [
    "AudioInfo",
    "AudioSource",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "DEFAULT_MAX_SECONDS",
    "load_audio",
    "read_info",
    "iter_mono",
    "mono_chunks",
    "finish_chunk",
    "open_checked",
    "write_wav",
    "source_name",
]

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

#: Sample rates outside this range are treated as a corrupt header.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
#: Default guard against huge inputs (seconds of audio); ``load_audio(max_seconds=None)`` disables it.
DEFAULT_MAX_SECONDS = 3600.0
#: Frames read per block (mono-mixed and resampled block by block).
_BLOCK_FRAMES = 1 << 18


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio source (nothing is decoded beyond the header)."""

    sample_rate: int
    channels: int
    frames: int
    duration: float  # seconds = frames / sample_rate
    format: str  # libsndfile major format, e.g. "WAV", "FLAC", "MP3"
    subtype: str  # e.g. "PCM_16", "FLOAT", "VORBIS", "MPEG_LAYER_III"

    def to_dict(self) -> dict:
        return asdict(self)


def source_name(source: AudioSource) -> str:
    """Short human-readable name of a source for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else "<stream>"


def _prepare(source: AudioSource) -> tuple[object, str]:
    """Check ``source`` and turn it into what a decoder opens (a path string, a ``BytesIO`` or
    the caller's file object); every refusal is a one-line error naming it."""
    name = source_name(source)
    fileobj: object
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise NotFoundError(f"{name}: no such file")
        if path.is_dir():
            raise AudioDecodeError(f"{name}: is a directory, not an audio file")
        try:
            st = path.stat()
        except OSError as exc:
            raise AudioDecodeError(f"{name}: cannot read ({exc.strerror or exc})") from exc
        if not stat.S_ISREG(st.st_mode):  # a FIFO would hang, /dev/zero never end
            raise AudioDecodeError(f"{name}: not a regular file (a FIFO, device or socket)")
        size = st.st_size
        if size == 0:
            raise AudioDecodeError(f"{name}: empty file (0 bytes)")
        fileobj = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioDecodeError(f"{name}: empty input (0 bytes)")
        fileobj = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        fileobj = source
    else:
        raise InvalidInputError(
            f"audio source must be a path, bytes or a binary file object, not {type(source).__name__}"
        )
    return fileobj, name


def _head(fileobj: object, n: int = 12) -> bytes:
    """The first ``n`` bytes of a prepared source, the position left where it was (b"" for a
    stream that cannot seek back: soundfile could not read it either)."""
    try:
        if isinstance(fileobj, str):
            with open(fileobj, "rb") as f:
                return f.read(n)
        if not (hasattr(fileobj, "seekable") and fileobj.seekable()):  # type: ignore[attr-defined]
            return b""
        pos = fileobj.tell()  # type: ignore[attr-defined]
        try:
            return bytes(fileobj.read(n) or b"")  # type: ignore[attr-defined]
        finally:
            fileobj.seek(pos)  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return b""


def _open_any(source: AudioSource) -> "tuple[sf.SoundFile | AvAudio, str]":
    """soundfile for everything it reads; PyAV (``hashing.av_audio``) for M4A/AAC."""
    fileobj, name = _prepare(source)
    if is_mp4_or_adts(_head(fileobj)):
        return open_av(fileobj, name), name
    return _sf_open(fileobj, name), name


def _sf_open(fileobj: object, name: str) -> sf.SoundFile:
    try:
        snd = sf.SoundFile(fileobj, mode="r")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        # libsndfile messages repeat the path; keep the tail that says what is wrong.
        if ":" in reason:
            reason = reason.rsplit(":", 1)[-1].strip() or reason
        raise AudioDecodeError(f"{name}: not a readable audio file ({reason})") from exc
    except OSError as exc:
        raise AudioDecodeError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    return snd


def _facts(snd: "sf.SoundFile | AvAudio") -> tuple[int, int, int]:
    """(sample rate, channels, frames) from either decoder's header."""
    if isinstance(snd, AvAudio):
        return snd.sample_rate, snd.channels, snd.frames
    return int(snd.samplerate), int(snd.channels), int(snd.frames)


def _check_header(snd: "sf.SoundFile | AvAudio", name: str) -> None:
    sr, channels, frames = _facts(snd)
    if not (MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE):
        raise AudioDecodeError(
            f"{name}: implausible sample rate {sr} Hz "
            f"(accepted {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)"
        )
    if channels < 1:
        raise AudioDecodeError(f"{name}: no audio channels")
    if frames == 0 and not isinstance(snd, AvAudio):  # raw AAC may not declare its length
        raise AudioDecodeError(f"{name}: no audio frames (zero-length recording)")


def _blocks(snd: "sf.SoundFile | AvAudio") -> Iterator[np.ndarray]:
    """(frames, channels) float32 blocks of either decoder, in order."""
    if isinstance(snd, AvAudio):
        yield from snd.blocks()
        return
    while True:
        block = snd.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            return
        yield block


@quiet_decoder
def read_info(source: AudioSource) -> AudioInfo:
    """Header of ``source`` (path, bytes or file object) as an :class:`AudioInfo`.

    Raises ``AudioDecodeError`` for unreadable, empty or zero-frame input.
    """
    snd, name = _open_any(source)
    with snd:
        _check_header(snd, name)
        sr, channels, frames = _facts(snd)
        if isinstance(snd, AvAudio):
            if frames == 0:  # raw AAC without a declared length: count it
                frames = sum(block.shape[0] for block in snd.blocks())
                if frames == 0:
                    raise AudioDecodeError(f"{name}: no audio frames (zero-length recording)")
            fmt, subtype = snd.format, snd.codec
        else:
            fmt, subtype = str(snd.format), str(snd.subtype)
        return AudioInfo(sample_rate=sr, channels=channels, frames=frames,
                         duration=float(frames) / float(sr), format=fmt, subtype=subtype)


def iter_mono(source: AudioSource, *, max_seconds: float | None = DEFAULT_MAX_SECONDS
              ) -> Iterator[tuple[int, np.ndarray]]:
    """(sample rate, float32 mono block) of ``source`` at its own rate, block by block: for a
    pass over a long recording (its level, say) without holding all of it in memory. The
    caller holds ``hashing.quiet.decoder_quiet`` around the loop if it wants decoder noise off."""
    snd, name = _open_any(source)
    with snd:
        _check_header(snd, name)
        sr = _facts(snd)[0]
        limit = None if max_seconds is None else int(np.ceil(max_seconds * sr))
        n = 0
        for block in _blocks(snd):
            n += block.shape[0]
            if limit is not None and n > limit:
                raise AudioDecodeError(f"{name}: more than {max_seconds:g} s of audio")
            yield sr, block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]


@quiet_decoder
def load_audio(
    source: AudioSource,
    sample_rate: int = paper.SAMPLE_RATE,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> np.ndarray:
    """Decode ``source`` to a float32 mono array at ``sample_rate`` Hz, values in [-1, 1].

    Channels are mixed by their mean; resampling uses soxr quality "HQ" (streamed block by
    block: identical to the one-shot result). ``sample_rate=None`` keeps the file's rate.
    ``max_seconds`` bounds the decoded duration (``None``: no bound). M4A/AAC goes through
    PyAV (``hashing.av_audio``, the ``m4a`` extra), everything else through soundfile.

    Raises ``AudioDecodeError`` (one line, names the file) for: empty input, data that is not
    audio, zero frames, a sample rate outside [1 kHz, 768 kHz], NaN/inf samples, a recording
    longer than ``max_seconds``, M4A/AAC without PyAV. ``NotFoundError`` for a missing path.
    """
    if sample_rate is not None and not (MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE):
        raise InvalidInputError(f"target sample rate {sample_rate} Hz is out of range")
    snd, name = _open_any(source)
    with snd:
        _check_header(snd, name)
        return _decode(snd, name, sample_rate, max_seconds)


def open_checked(source: AudioSource) -> "tuple[sf.SoundFile | AvAudio, str]":
    """(decoder, name) of ``source`` with its header checked: for ``mono_chunks``."""
    snd, name = _open_any(source)
    try:
        _check_header(snd, name)
    except BaseException:
        snd.close()
        raise
    return snd, name


def _decode(snd: "sf.SoundFile | AvAudio", name: str, sample_rate: int | None,
            max_seconds: float | None) -> np.ndarray:
    """Mix ``snd``'s blocks to mono and resample them into one preallocated array."""
    sr_in, _, frames = _facts(snd)
    sr_out = sr_in if sample_rate is None else int(sample_rate)
    max_in_frames = _max_in_frames(snd, name, max_seconds)
    # one preallocated output buffer (grown only if the header's frame count was short):
    # peak memory is about the output itself, not output + a list of parts + their concatenation
    est = int(np.ceil(max(0, frames) * sr_out / sr_in)) + 64 if 0 < frames < 2**40 else 1 << 16
    if max_in_frames is not None:
        est = min(est, int(np.ceil(max_in_frames * sr_out / sr_in)) + 64)
    out = np.empty(max(1, est), dtype=np.float32)
    n_out = 0
    chunks = mono_chunks(snd, name, sample_rate, max_seconds)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration as stop:
            peak = stop.value
            break
        if n_out + chunk.size > out.size:
            grown = np.empty(max(n_out + chunk.size, out.size * 2), dtype=np.float32)
            grown[:n_out] = out[:n_out]
            out = grown
        out[n_out : n_out + chunk.size] = chunk
        n_out += chunk.size
    # a view when the slack is small (the usual case: the header's frame count was right)
    y = out[:n_out] if out.size - n_out <= 1 << 16 else out[:n_out].copy()
    del out
    if y.size == 0:
        raise AudioDecodeError(f"{name}: no audio frames after resampling")
    return finish_chunk(y, peak)


def _max_in_frames(snd: "sf.SoundFile | AvAudio", name: str, max_seconds: float | None) -> int | None:
    """The most input frames ``max_seconds`` allows; a header that declares more is refused
    before anything is decoded."""
    sr_in, _, frames = _facts(snd)
    max_in_frames = None if max_seconds is None else int(np.ceil(max_seconds * sr_in))
    if max_in_frames is not None and frames > max_in_frames and frames < 2**62:
        raise AudioDecodeError(
            f"{name}: {frames / sr_in:.0f} s of audio exceeds the limit of {max_seconds:g} s"
        )
    return max_in_frames


def mono_chunks(snd: "sf.SoundFile | AvAudio", name: str, sample_rate: int | None,
                max_seconds: float | None) -> Iterator[np.ndarray]:
    """The decoded signal as float32 mono chunks at ``sample_rate``, before the peak scaling
    (``finish_chunk``); the generator returns the input's peak (``StopIteration.value``). Why a
    generator: ``load_audio`` gathers the chunks, ``hashing.lazy_signal`` keeps only a window of
    them, and both must see exactly the same samples."""
    sr_in = _facts(snd)[0]
    sr_out = sr_in if sample_rate is None else int(sample_rate)
    max_in_frames = _max_in_frames(snd, name, max_seconds)
    stream = None
    if sr_out != sr_in:
        stream = soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality="HQ")
    n_in = 0
    peak = 0.0
    try:
        for block in _blocks(snd):
            n_in += block.shape[0]
            if max_in_frames is not None and n_in > max_in_frames:
                raise AudioDecodeError(
                    f"{name}: more than {max_seconds:g} s of audio (limit max_seconds)"
                )
            with np.errstate(all="ignore"):  # inf - inf in a corrupt file: refused just below,
                mono = (block.mean(axis=1, dtype=np.float32)  # no RuntimeWarning on stderr
                        if block.shape[1] > 1 else block[:, 0])
            if not np.isfinite(mono).all():
                raise AudioDecodeError(f"{name}: contains NaN or infinite samples")
            if mono.size:
                peak = max(peak, float(np.max(np.abs(mono))))
            if stream is not None:
                mono = _finite(stream.resample_chunk(mono, last=False), name, peak)
            yield mono
        if stream is not None:
            yield _finite(stream.resample_chunk(np.zeros(0, np.float32), last=True), name, peak)
    except AudioDecodeError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioDecodeError(f"{name}: corrupt audio data ({' '.join(str(exc).split())})") from exc
    if n_in == 0:
        raise AudioDecodeError(f"{name}: no audio frames (zero-length recording)")
    return peak


def _finite(y: np.ndarray, name: str, peak: float) -> np.ndarray:
    """A resampled chunk, refused if the resampler overflowed: finite float samples near the
    float32 limit (a corrupt float file) sum past it in the filter (found by the 10^6-input
    fuzzing: the NaN came out of ``load_audio``)."""
    if not np.isfinite(y).all():
        raise AudioDecodeError(f"{name}: sample values too large to resample (peak {peak:.3g})")
    return y


def finish_chunk(y: np.ndarray, peak: float) -> np.ndarray:
    """A decoded chunk (in place) as ``load_audio`` returns it: a float file whose peak exceeds
    full scale scaled by that peak, then clipped to [-1, 1] (the resampler can overshoot
    slightly: Gibbs)."""
    if peak > 1.0:
        # float files may exceed full scale; scale (not clip) so the waveform shape is kept
        y /= np.float32(peak)
    np.clip(y, -1.0, 1.0, out=y)
    return y


def write_wav(
    dest: str | os.PathLike | BinaryIO,
    y: np.ndarray,
    sample_rate: int = paper.SAMPLE_RATE,
    subtype: str = "PCM_16",
) -> None:
    """Write ``y`` (shape (n,) or (n, channels), float in [-1, 1]) as a WAV file (16-bit PCM
    by default) to a path or a writable binary buffer. Values are clipped to [-1, 1]."""
    a = np.asarray(y, dtype=np.float32)
    if a.ndim not in (1, 2):
        raise InvalidInputError(f"write_wav expects a 1-D or 2-D array, got shape {a.shape}")
    if subtype.startswith("PCM"):
        a = np.clip(a, -1.0, 1.0)
    target = str(dest) if isinstance(dest, (str, os.PathLike)) else dest
    sf.write(target, a, int(sample_rate), format="WAV", subtype=subtype)
