"""M4A/AAC (phone voice memos) through PyAV, the one format family soundfile cannot read.

Why a second decoder: libsndfile reads WAV, FLAC, Ogg, MP3, AIFF..., but not the MP4/M4A
container nor raw AAC (ADTS), which is what a phone's voice-memo app writes. PyAV's wheel ships
its own FFmpeg, so nothing else has to be installed -- but that wheel is ~36 MB (~100 MB
unpacked), so it is the optional extra ``speechvault[m4a]``, not a core dependency, and it is
imported only when a file *is* M4A/AAC (recognised from its first bytes, not its name).
soundfile stays the decoder of every other format.

This module only opens the container and yields float32 blocks (frames, channels) at the file's
own rate; ``hashing.audio`` mixes them to mono, resamples and checks limits exactly as it does for
soundfile's blocks, so an M4A and a WAV of the same sound reach the model the same way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from speechvault.errors import AudioDecodeError

__all__ = ["EXTRA", "MP4_SUFFIXES", "AvAudio", "is_mp4_or_adts", "open_av"]

#: the optional extra that brings PyAV (pyproject.toml)
EXTRA = "m4a"
#: file names that hold MP4 audio or raw AAC (used where only a name is known: folder listings)
MP4_SUFFIXES = (".m4a", ".aac")


def is_mp4_or_adts(head: bytes) -> bool:
    """Whether the first bytes of a file are an MP4/M4A/3GP container (an ``ftyp`` box at offset
    4) or an ADTS AAC stream (12-bit sync word, layer 00 -- MP3 frames have layer 01..11)."""
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0


def missing_extra_message(name: str) -> str:
    return (f"{name}: M4A/AAC audio needs PyAV, which is not installed here: "
            f"pip install 'speechvault[{EXTRA}]'")


@dataclass
class AvAudio:
    """An open M4A/AAC source: header facts and the decoded blocks."""

    name: str
    container: Any
    stream: Any
    sample_rate: int
    channels: int
    frames: int  # from the container's duration (an estimate for ADTS; exact enough to bound)
    codec: str
    format: str

    def blocks(self) -> Iterator[np.ndarray]:
        """(frames, channels) float32 blocks, in order; ``AudioDecodeError`` for corrupt data."""
        import av

        resampler = av.AudioResampler(format="fltp")  # planar float, the file's rate and layout
        try:
            for packet in self.container.demux(self.stream):
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        yield np.ascontiguousarray(out.to_ndarray().T, dtype=np.float32)
            for out in resampler.resample(None):
                yield np.ascontiguousarray(out.to_ndarray().T, dtype=np.float32)
        except av.FFmpegError as exc:
            raise AudioDecodeError(f"{self.name}: corrupt audio data ({_reason(exc)})") from None

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "AvAudio":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "strerror", None) or exc).split())


def open_av(fileobj: Any, name: str) -> AvAudio:
    """Open an M4A/AAC ``fileobj`` (a path string or a seekable binary file object) with PyAV.

    ``AudioDecodeError`` (one line) when PyAV is not installed (naming the extra), when the data
    is not a readable container, or when it holds no audio stream."""
    try:
        import av
    except ImportError:
        raise AudioDecodeError(missing_extra_message(name)) from None
    source = fileobj
    if isinstance(fileobj, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(fileobj))
    try:
        container = av.open(source, mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioDecodeError(f"{name}: not a readable M4A/AAC file ({_reason(exc)})") from None
    try:
        audio = [s for s in container.streams if s.type == "audio"]
        if not audio:
            raise AudioDecodeError(f"{name}: no audio stream in this MP4 file")
        stream = audio[0]
        rate = int(stream.codec_context.sample_rate or stream.sample_rate or 0)
        channels = int(stream.codec_context.channels or 0)
        return AvAudio(name=name, container=container, stream=stream, sample_rate=rate,
                       channels=channels, frames=_frames(container, stream, rate),
                       codec=str(stream.codec_context.name or "aac").upper(),
                       format=_format_name(container))
    except BaseException:
        container.close()
        raise


def _format_name(container: Any) -> str:
    """"MP4" for FFmpeg's "mov,mp4,m4a,3gp,3g2,mj2" demuxer, else its own name ("AAC")."""
    name = str(container.format.name or "")
    return "MP4" if "mp4" in name.split(",") else name.split(",")[0].upper()


def _frames(container: Any, stream: Any, rate: int) -> int:
    """The length in frames the container declares (stream duration, else the container's)."""
    seconds = 0.0
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    return max(0, int(round(seconds * rate)))
