"""The second decoder: PyAV (FFmpeg, bundled in its wheel) for the containers libsndfile cannot read.

MPEG-4 (m4a/m4b/mp4/m4v/mov: AAC, ALAC), ADTS AAC, Windows Media (wma/asf: WMA) and Matroska/WebM
(mka/mkv/webm: Opus, Vorbis, FLAC), including the audio track of a video. Everything libsndfile
reads keeps going through soundfile untouched: :func:`pyav_demuxer` decides from the first bytes
(and, for a file libsndfile refused, the extension) before anything is decoded, so those formats
pay one 64-byte comparison.

What this module guarantees, like the soundfile path:

* samples leave it as float32 ``(n, channels)`` blocks scaled exactly like libsndfile scales
  them (int16 / 32768, int32 / 2**31), so the shared mono mix and soxr resampling in
  :mod:`indexer.audio.stream` give identical vectors for identical PCM;
* the sample rate, channels and duration come from the container headers and are checked
  against the limits BEFORE decoding; a header that lies (or has no duration) is caught while
  decoding, which stops as soon as the decoded audio passes the limit;
* decoding is frame by frame (about 1 024 samples each): a long file is streamed in bounded memory;
* every failure is a typed :class:`~indexer.errors.AudioError`; FFmpeg's log stays silent
  (PyAV discards it unless someone raises ``av.logging``'s level), its error text goes into the reason;
* FFmpeg only opens the local file, with the demuxer chosen here (no playlists, no network, no
  format guessing on garbage).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.errors import AudioDecodeError, AudioTooLongError, EmptyAudioError, UnsupportedFormatError

if TYPE_CHECKING:
    from indexer.audio.decode import AudioInfo, DecodeLimits

log = logging.getLogger("indexer.audio.decode")

INSTALL_HINT = "pip install av"

# demuxer -> what users call it (AudioInfo.format, error messages)
_DEMUXERS = {"mov": "MP4", "asf": "ASF", "matroska": "Matroska", "aac": "AAC"}
# Sniffed from the first bytes: (offset, magic, demuxer).
_MAGIC = [
    (4, b"ftyp", "mov"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"),
    (0, b"\x1a\x45\xdf\xa3", "matroska"),
]
#: Extensions decoded by PyAV, with the demuxer tried when the first bytes say nothing
#: (a QuickTime file without ``ftyp``, an ADTS stream behind an ID3 tag).
PYAV_EXTENSIONS = {
    ".m4a": "mov",
    ".m4b": "mov",
    ".mp4": "mov",
    ".m4v": "mov",
    ".mov": "mov",
    ".aac": "aac",
    ".wma": "asf",
    ".asf": "asf",
    ".mka": "matroska",
    ".mkv": "matroska",
    ".webm": "matroska",
}
_FORMAT_BY_EXT = {".m4a": "M4A", ".m4b": "M4B", ".mp4": "MP4", ".m4v": "M4V", ".mov": "MOV", ".wma": "WMA"}
_FORMAT_BY_EXT |= {".webm": "WEBM", ".mka": "MKA", ".mkv": "MKV", ".aac": "AAC", ".asf": "ASF"}
#: Input-to-float scale of each FFmpeg sample format, as libsndfile scales the same integers.
_SCALE = {"flt": None, "fltp": None, "dbl": None, "dblp": None, "s16": 2.0**-15, "s16p": 2.0**-15}
_SCALE |= {"s32": 2.0**-31, "s32p": 2.0**-31, "s64": 2.0**-63, "s64p": 2.0**-63}


def sniff_demuxer(head: bytes) -> str | None:
    """The demuxer for a file whose first bytes name a PyAV-only container, else None."""
    for offset, magic, demuxer in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return demuxer
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
        return "aac"
    return None


def _ffmpeg_text(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__


def _import_av(path: str, what: str) -> Any:
    try:
        import av
    except ImportError as exc:
        raise UnsupportedFormatError(
            path, f"{what} files need the PyAV decoder, which is not installed ({INSTALL_HINT})"
        ) from exc
    return av


class PyAVReader:
    """An open container's first audio track, read as float32 ``(n, channels)`` blocks."""

    def __init__(
        self, path: str, container: Any, stream: Any, info: AudioInfo, limits: DecodeLimits | None, demuxer: str
    ):
        self.path, self.info = path, info
        #: ADTS has no length field (FFmpeg estimates it from the first frames' bit rate), so such
        #: a file is always streamed: an estimate must not size an in-memory decode.
        self.length_estimated = demuxer == "aac"
        self._container, self._stream = container, stream
        import av  # already imported by open_pyav

        self._av_error = av.error.FFmpegError
        self._max_frames = _frame_budget(info, limits)

    def _frames(self) -> Iterator[np.ndarray]:
        """Decoded frames as float32 ``(n, channels)`` arrays, checked against the budget."""
        sr, channels = self.info.sample_rate, self.info.channels
        done = 0
        try:
            for frame in self._container.decode(self._stream):
                if frame.sample_rate != sr or len(frame.layout.channels) != channels:
                    raise AudioDecodeError(
                        self.path,
                        f"the audio track changes from {sr} Hz, {channels} channels to {frame.sample_rate} Hz, "
                        f"{len(frame.layout.channels)} channels after {done / sr:.2f} s",
                    )
                block = _to_float(frame, channels)
                done += len(block)
                if self._max_frames is not None and done > self._max_frames:
                    raise AudioTooLongError(
                        self.path,
                        f"decodes to more than {self._max_frames / sr:.1f} s of audio, past the limit "
                        f"(its header said {self.info.duration_s:.1f} s)",
                    )
                yield block
        except self._av_error as exc:
            raise AudioDecodeError(self.path, f"decoding failed after {done / sr:.2f} s ({_ffmpeg_text(exc)})") from exc

    def read_all(self) -> np.ndarray:
        """The whole track, one ``(n, channels)`` array (preallocated from the header's length).

        Only for files whose header length chose the in-memory path: one that decodes to far more
        (a forged or broken length field) is refused before it can grow past the memory planned."""
        channels, sr = self.info.channels, self.info.sample_rate
        out = np.empty((max(self.info.frames, 1024), channels), dtype=np.float32)
        cap = int(self.info.frames * 1.5) + 30 * sr
        n = 0
        for block in self._frames():
            if n + len(block) > cap:
                raise AudioDecodeError(
                    self.path,
                    f"holds more than {cap / sr:.1f} s of audio although its header says "
                    f"{self.info.duration_s:.1f} s: the length field is wrong (damaged or forged)",
                )
            if n + len(block) > len(out):
                grown = np.empty((max(2 * len(out), n + len(block)), channels), dtype=np.float32)
                grown[:n] = out[:n]
                out = grown
            out[n : n + len(block)] = block
            n += len(block)
        return out[:n]

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """``block_frames``-frame blocks (the last one shorter) in one reused buffer."""
        buf = np.empty((block_frames, self.info.channels), dtype=np.float32)
        n = 0
        for block in self._frames():
            start = 0
            while start < len(block):
                take = min(block_frames - n, len(block) - start)
                buf[n : n + take] = block[start : start + take]
                n += take
                start += take
                if n == block_frames:
                    yield buf
                    n = 0
        if n:
            yield buf[:n]

    def note_short(self, decoded: int) -> None:
        """Lossy headers give the length to within a frame or two; warn only beyond a second."""
        if self.info.frames - decoded > self.info.sample_rate:
            log.warning(
                "%s: truncated? decoded %d of the %d frames the header announces", self.path, decoded, self.info.frames
            )


def _frame_budget(info: AudioInfo, limits: DecodeLimits | None) -> int | None:
    """Frames past which decoding stops: the limits, with a second of slack for headers that
    estimate the length (ADTS, Matroska without an index)."""
    if limits is None:
        return None
    budgets = []
    if limits.max_duration_s is not None:
        budgets.append(int((limits.max_duration_s + 1) * info.sample_rate))
    if limits.max_samples is not None:
        budgets.append(limits.max_samples // info.channels + info.sample_rate)
    return min(budgets) if budgets else None


def _to_float(frame: Any, channels: int) -> np.ndarray:
    """A decoded frame as float32 ``(n, channels)``, integers scaled like libsndfile does."""
    name = frame.format.name
    a = frame.to_ndarray()
    a = a.T if frame.format.is_planar else a.reshape(-1, channels)
    if name in ("u8", "u8p"):
        return (a.astype(np.float32) - 128) * np.float32(1 / 128)
    scale = _SCALE.get(name)
    if scale is None:
        return np.ascontiguousarray(a, dtype=np.float32)
    return a.astype(np.float32) * np.float32(scale)


def _header_facts(ext: str, demuxer: str, container: Any, stream: Any) -> dict[str, Any]:
    """:class:`~indexer.audio.decode.AudioInfo`'s fields from the headers (frames 0: unknown)."""
    cc = stream.codec_context
    sr, channels = int(cc.sample_rate or 0), int(cc.channels or 0)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    else:
        duration = 0.0  # unknown: decoding checks the limits as it goes
    return {
        "format": _FORMAT_BY_EXT.get(ext, _DEMUXERS[demuxer]),
        "subtype": (cc.name or "").upper() or None,
        "sample_rate": sr,
        "channels": channels,
        "frames": int(round(duration * sr)),
        "duration_s": duration,
    }


@contextmanager
def open_pyav(path: str, ext: str, demuxer: str) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    """Open ``path`` with FFmpeg's ``demuxer`` (local file only) and find its audio track.

    Yields ``(container, stream, facts)`` with the header's facts; nothing is decoded yet.
    Raises :class:`UnsupportedFormatError` when PyAV is missing, :class:`AudioDecodeError` when
    the container is damaged and :class:`EmptyAudioError` when it has no audio track.
    """
    what = _FORMAT_BY_EXT.get(ext, _DEMUXERS[demuxer])
    av = _import_av(path, what)
    try:
        container = av.open(path, format=demuxer, metadata_errors="replace", options={"protocol_whitelist": "file"})
    except (av.error.FFmpegError, OSError, UnicodeError) as exc:
        raise AudioDecodeError(path, f"not a valid {what} file, or it is damaged ({_ffmpeg_text(exc)})") from exc
    try:
        if not container.streams.audio:
            others = sorted({s.type for s in container.streams})
            has = f"only {' and '.join(others)} tracks" if others else "no tracks at all"
            raise EmptyAudioError(path, f"has no audio track ({has})")
        stream = container.streams.audio[0]
        yield container, stream, _header_facts(ext, demuxer, container, stream)
    finally:
        container.close()
