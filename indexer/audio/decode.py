"""Turn an audio file (or an in-memory array) into the mono float32 waveform CLAP expects.

Why this module exists: the public CLAP checkpoints were trained on ``librosa.load(path,
sr=48000)``, and a different decoder/resampler shifts embeddings. We reproduce that loader bit for
bit (libsndfile float32 decode, channel mean, soxr HQ, ``ceil`` length fix) with numpy +
soundfile + soxr only, so the runtime stays torch- and librosa-free.

What users see:

* every failure is a typed :class:`~indexer.errors.AudioError` naming the file and the reason,
  never a crash and never a silent zero vector;
* limits (duration, sample rate, channels) are checked from the header, before decoding;
* long files can be opened as an :class:`AudioSource` whose waveform lives in an anonymous
  temporary file, so hours of audio cost disk, not RAM.

Truncated files: when libsndfile can tell that the header promises more than the file holds
(WAV/AIFF data chunk longer than the file, cut MP3 or Ogg streams), the decodable prefix is
returned and a warning is logged. When decoding itself fails (e.g. a FLAC stream cut mid-frame
"loses sync"), or the file is cut inside its header, :class:`AudioDecodeError` is raised.
Anything libsndfile opens is accepted, including formats beyond the advertised list (CAF, W64...).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from indexer.audio.stream import (
    SUPPORTED_FORMATS_TEXT,
    AudioSource,
    block_frames_for,
    decoder_output_captured,
    first_non_finite,
    fix_length,
    non_finite_error,
    resample_whole,
    resampled_length,
    stream_decode,
    to_mono,
)
from indexer.errors import (
    AudioDecodeError,
    AudioTooLongError,
    EmptyAudioError,
    InvalidSamplesError,
    UnsupportedFormatError,
)

__all__ = [
    "SUPPORTED_FORMATS_TEXT",
    "AudioInfo",
    "AudioSource",
    "DecodeLimits",
    "int16_roundtrip",
    "load_audio",
    "open_audio",
    "prepare_waveform",
    "probe",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

# Extensions we advertise; a file with one of them that libsndfile rejects is damaged, not exotic.
_SUPPORTED_EXT = {
    ".wav": "WAV",
    ".wave": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "Opus",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".aifc": "AIFF",
}
# Common containers libsndfile cannot read: named so the user knows to convert, not to re-download.
_UNSUPPORTED_EXT = {
    ".m4a": "MPEG-4 audio (AAC/ALAC)",
    ".m4b": "MPEG-4 audio",
    ".mp4": "MPEG-4",
    ".aac": "AAC",
    ".wma": "Windows Media Audio",
    ".asf": "Windows Media",
    ".webm": "WebM",
    ".mka": "Matroska",
    ".mkv": "Matroska",
    ".amr": "AMR",
    ".ape": "Monkey's Audio",
    ".wv": "WavPack",
    ".ac3": "AC-3",
    ".dts": "DTS",
    ".mid": "MIDI",
    ".midi": "MIDI",
    ".3gp": "3GPP",
    ".mov": "QuickTime",
    ".ra": "RealAudio",
    ".rm": "RealMedia",
    ".dsf": "DSD",
    ".dff": "DSD",
    ".mpc": "Musepack",
    ".alac": "ALAC",
}
_MAGIC = [  # (offset, bytes, name): sniffed only after libsndfile has refused the file
    (4, b"ftyp", "MPEG-4/QuickTime (AAC, ALAC)"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "Windows Media (ASF)"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"#!AMR", "AMR"),
    (0, b"MAC ", "Monkey's Audio"),
    (0, b"wvpk", "WavPack"),
    (0, b"MThd", "MIDI"),
    (0, b"ADIF", "AAC (ADIF)"),
    (0, b".RMF", "RealMedia"),
    (0, b"DSD ", "DSD"),
    (0, b"MPCK", "Musepack"),
]


@dataclass(frozen=True)
class AudioInfo:
    """What the header says, before any decoding (frames may be an estimate for MP3)."""

    path: str
    format: str
    subtype: str | None
    sample_rate: int
    channels: int
    frames: int
    duration_s: float


@dataclass(frozen=True)
class DecodeLimits:
    """Guards against absurd or hostile inputs, plus the in-memory/streaming switch.

    ``in_memory_max_s``: files up to this long are decoded whole (fast); longer ones, and ones
    whose raw decode would outweigh that many seconds of 48 kHz stereo (a 20 min, 64-channel,
    768 kHz file is 236 GB of float32), are streamed block by block (``stream_block_s`` seconds
    each, bounded memory). Both paths give identical samples. ``min_sample_rate`` rejects
    headers like 1 Hz that are corrupt, not audio.

    ``max_samples`` bounds the decoding work itself (frames x channels, from the header): the
    duration alone does not, since a 10-minute, 8-channel, 655 kHz file is 3.1 billion samples
    (tens of seconds of CPU) although it compresses to a few MB when silent.
    """

    max_duration_s: float | None = 4 * 3600
    max_sample_rate: int = 768_000
    max_channels: int = 64
    in_memory_max_s: float = 1200.0
    min_sample_rate: int = 1000
    stream_block_s: float = 10.0
    max_samples: int | None = None

    def __post_init__(self) -> None:
        if self.max_duration_s is not None and self.max_duration_s <= 0:
            raise ValueError("max_duration_s must be positive or None")
        if not 0 < self.min_sample_rate <= self.max_sample_rate:
            raise ValueError("need 0 < min_sample_rate <= max_sample_rate")
        if self.max_channels < 1 or self.in_memory_max_s < 0 or self.stream_block_s <= 0:
            raise ValueError("max_channels >= 1, in_memory_max_s >= 0, stream_block_s > 0")
        if self.max_samples is not None and self.max_samples <= 0:
            raise ValueError("max_samples must be positive or None")


DEFAULT_LIMITS = DecodeLimits()


def int16_roundtrip(x: np.ndarray) -> np.ndarray:
    """laion_clap's ``(np.clip(x, -1, 1) * 32767).astype(np.int16) / 32767`` as float32.

    laion_clap quantises every waveform this way before its front end; checkpoints whose
    manifest says so need the same (truncation toward zero, *not* rounding) to match.
    """
    x = np.asarray(x, dtype=np.float32)
    return ((np.clip(x, -1, 1) * 32767).astype(np.int16) / 32767).astype(np.float32)


# ----------------------------------------------------------------------------- opening files


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _check_limits(path: str | None, sample_rate: int, channels: int, frames: int, limits: DecodeLimits) -> None:
    """Reject absurd headers and over-long files before a single sample is decoded."""
    if not limits.min_sample_rate <= sample_rate <= limits.max_sample_rate:
        raise InvalidSamplesError(
            path,
            f"sample rate {sample_rate} Hz is outside the accepted range "
            f"{limits.min_sample_rate}..{limits.max_sample_rate} Hz",
        )
    if not 1 <= channels <= limits.max_channels:
        raise InvalidSamplesError(path, f"{channels} channels is outside the accepted range 1..{limits.max_channels}")
    duration = frames / sample_rate
    if limits.max_duration_s is not None and duration > limits.max_duration_s:
        raise AudioTooLongError(
            path,
            f"is {_hms(duration)} ({duration:.1f} s) long; the limit is "
            f"{_hms(limits.max_duration_s)} ({limits.max_duration_s:g} s)",
        )
    if limits.max_samples is not None and frames * channels > limits.max_samples:
        raise AudioTooLongError(
            path,
            f"would decode {frames * channels:,} samples ({duration:.1f} s x {channels} channels at "
            f"{sample_rate} Hz); the limit is {limits.max_samples:,}",
        )


def _classify_open_error(path: str, head: bytes, exc: Exception) -> Exception:
    """Decide whether a file libsndfile refused is exotic (unsupported) or damaged (decode)."""
    detail = getattr(exc, "error_string", None) or str(exc)
    if "does not exist" in detail:  # libsndfile's mpg123 glue says this for garbage .mp3 files
        detail = "no decodable audio stream found"
    hint = f"supported formats: {SUPPORTED_FORMATS_TEXT}"
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return UnsupportedFormatError(path, f"{name} files are not supported ({hint})")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return UnsupportedFormatError(path, f"AAC (ADTS) files are not supported ({hint})")
    ext = Path(path).suffix.lower()
    if ext in _UNSUPPORTED_EXT:
        return UnsupportedFormatError(path, f"{ext} ({_UNSUPPORTED_EXT[ext]}) files are not supported ({hint})")
    if ext in _SUPPORTED_EXT:
        return AudioDecodeError(path, f"not a valid {_SUPPORTED_EXT[ext]} file, or it is damaged ({detail})")
    if "not recognised" in detail.lower():
        return UnsupportedFormatError(path, f"not a recognised audio format ({hint})")
    return AudioDecodeError(path, f"could not be opened as audio ({detail})")


@contextmanager
def _open_checked(path: PathLike, limits: DecodeLimits | None) -> Iterator[tuple[sf.SoundFile, AudioInfo]]:
    """Open ``path`` with libsndfile, turning every failure into a typed AudioError."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise AudioDecodeError(p, "file not found")
    if os.path.isdir(p):
        raise AudioDecodeError(p, "is a directory, not an audio file")
    if not os.path.isfile(p):
        raise AudioDecodeError(p, "is not a regular file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise AudioDecodeError(p, f"cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise EmptyAudioError(p, "file is empty (0 bytes)")
    with decoder_output_captured():  # the caller's decoding runs inside too (it is under yield)
        try:
            handle = sf.SoundFile(p)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise _classify_open_error(p, head, exc) from exc
        with handle:
            yield handle, _checked_info(p, handle, limits)


def _checked_info(p: str, handle: sf.SoundFile, limits: DecodeLimits | None) -> AudioInfo:
    """The header's facts, checked for sense and against ``limits``."""
    info = AudioInfo(
        path=p,
        format=handle.format,
        subtype=handle.subtype or None,
        sample_rate=int(handle.samplerate),
        channels=int(handle.channels),
        frames=int(handle.frames),
        duration_s=handle.frames / handle.samplerate if handle.samplerate > 0 else 0.0,
    )
    if info.sample_rate <= 0 or info.channels <= 0:
        raise InvalidSamplesError(p, f"header declares {info.sample_rate} Hz and {info.channels} channels")
    if info.frames <= 0:
        raise EmptyAudioError(p, "contains no audio frames")
    if limits is not None:
        _check_limits(p, info.sample_rate, info.channels, info.frames, limits)
    return info


def _note_short(handle: sf.SoundFile, info: AudioInfo, decoded: int) -> None:
    """Log (not fail) when a header promised more audio than the file holds."""
    if decoded < info.frames:
        log.warning("%s: truncated? decoded %d of the %d frames the header announces", info.path, decoded, info.frames)
    elif "should be" in handle.extra_info:
        log.warning(
            "%s: truncated? the header announces more data than the file holds; using the %d decodable frames",
            info.path,
            decoded,
        )


def probe(path: PathLike, *, limits: DecodeLimits | None = None) -> AudioInfo:
    """Read the header only. Raises typed errors for missing/unreadable/unsupported/empty files,
    and, when ``limits`` is given, for a sample rate, channel count or duration beyond them."""
    with _open_checked(path, limits) as (_, info):
        return info


# ----------------------------------------------------------------------------- decoding


def _check_target_sr(target_sr: int) -> None:
    if int(target_sr) != target_sr or target_sr <= 0:
        raise ValueError(f"target_sr must be a positive integer, got {target_sr!r}")


def _decode_whole(handle: sf.SoundFile, info: AudioInfo, target_sr: int) -> np.ndarray:
    """The reference path: one float32 read, channel mean, one-shot soxr (librosa.load)."""
    try:
        data = handle.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioDecodeError(info.path, f"decoding failed ({exc})") from exc
    if len(data) == 0:
        raise EmptyAudioError(info.path, "no audio could be decoded")
    _note_short(handle, info, len(data))
    bad = first_non_finite(data)
    if bad is not None:
        raise non_finite_error(info.path, bad, info.sample_rate)
    return resample_whole(to_mono(data), info.sample_rate, target_sr)


def _fits_in_memory(info: AudioInfo, limits: DecodeLimits) -> bool:
    return info.duration_s <= limits.in_memory_max_s and info.frames * info.channels <= limits.in_memory_max_s * 96_000


def _block_frames(info: AudioInfo, limits: DecodeLimits) -> int:
    return block_frames_for(info.sample_rate, info.channels, limits.stream_block_s)


def load_audio(path: PathLike, target_sr: int, *, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode ``path`` to a 1-D float32 mono waveform at ``target_sr``.

    Identical to ``librosa.load(path, sr=target_sr, mono=True)[0]`` for files libsndfile reads.
    Files beyond ``limits.in_memory_max_s`` are decoded block by block (same samples; peak
    memory is about twice the output instead of the raw multichannel decode). For hours of
    audio prefer :func:`open_audio`, which keeps the output on disk.
    """
    _check_target_sr(target_sr)
    with _open_checked(path, limits) as (handle, info):
        if _fits_in_memory(info, limits):
            return _decode_whole(handle, info, target_sr)
        chunks: list[np.ndarray] = []
        decoded = stream_decode(handle, info.path, target_sr, _block_frames(info, limits), chunks.append)
        if decoded == 0:
            raise EmptyAudioError(info.path, "no audio could be decoded")
        _note_short(handle, info, decoded)
    y = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return fix_length(y, resampled_length(decoded, info.sample_rate, target_sr))


def prepare_waveform(
    samples: np.ndarray,
    sample_rate: int,
    target_sr: int,
    *,
    name: str | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Apply the file path's checks, mono mix and resampling to an array already in memory.

    Accepts ``(n,)`` or ``(n, channels)`` (soundfile's layout); floats are taken as is, signed
    integers are scaled like libsndfile does (int16 / 32768, ...), uint8 is offset-binary.
    ``name`` is used in error messages (e.g. the uploaded file name). Never returns a view of
    ``samples``, so the caller may reuse its buffer.
    """
    _check_target_sr(target_sr)
    a = np.asarray(samples)
    kind = a.dtype.kind
    if kind == "f":
        a = a.astype(np.float32, copy=False)
    elif kind == "i":
        a = a.astype(np.float32) / np.float32(2.0 ** (8 * a.dtype.itemsize - 1))
    elif kind == "u" and a.dtype.itemsize == 1:
        a = (a.astype(np.float32) - 128) / np.float32(128)
    else:
        raise InvalidSamplesError(name, f"unsupported sample type {a.dtype}")
    if a.ndim not in (1, 2):
        raise InvalidSamplesError(name, f"expected shape (n,) or (n, channels), got {a.shape}")
    channels = 1 if a.ndim == 1 else a.shape[1]
    if a.ndim == 2 and channels > limits.max_channels and a.shape[0] <= limits.max_channels:
        raise InvalidSamplesError(name, f"shape {a.shape} looks like (channels, n); pass (n, channels)")
    if a.shape[0] == 0 or channels == 0:
        raise EmptyAudioError(name, "contains no samples")
    try:
        whole_rate = int(sample_rate) == sample_rate
    except (ValueError, OverflowError, TypeError):  # NaN, infinities, not a number at all
        whole_rate = False
    if not whole_rate:
        raise InvalidSamplesError(name, f"sample rate {sample_rate!r} is not an integer")
    _check_limits(name, int(sample_rate), channels, a.shape[0], limits)
    bad = first_non_finite(a)
    if bad is not None:
        raise non_finite_error(name, bad, int(sample_rate))
    y = resample_whole(to_mono(np.ascontiguousarray(a)), int(sample_rate), int(target_sr))
    return y.copy() if np.may_share_memory(y, samples) else y


# ----------------------------------------------------------------------------- sources


def open_audio(
    path: PathLike,
    target_sr: int,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    tmp_dir: PathLike | None = None,
) -> AudioSource:
    """Decode ``path`` into an :class:`AudioSource` at ``target_sr`` (mono float32).

    Up to ``limits.in_memory_max_s`` the file is decoded whole, exactly like :func:`load_audio`.
    Longer files are streamed in blocks into a temporary float32 file under ``tmp_dir`` (the
    system default when None) that costs 4 bytes per output sample on disk (a 3 h file at
    48 kHz: about 2.1 GB) but only a few blocks of RAM. The samples are identical either way.
    A full disk surfaces as OSError: it is the machine's problem, not the file's.
    """
    _check_target_sr(target_sr)
    with _open_checked(path, limits) as (handle, info):
        if _fits_in_memory(info, limits):
            y = _decode_whole(handle, info, target_sr)
            return AudioSource(target_sr, len(y), samples=y, info=info)
        fh = tempfile.TemporaryFile(prefix="clapsearch-wave-", suffix=".f32", dir=tmp_dir)
        try:
            written = 0

            def sink(chunk: np.ndarray) -> None:
                nonlocal written
                fh.write(np.ascontiguousarray(chunk, dtype=np.float32).data.cast("B"))
                written += len(chunk)

            decoded = stream_decode(handle, info.path, target_sr, _block_frames(info, limits), sink)
            if decoded == 0:
                raise EmptyAudioError(info.path, "no audio could be decoded")
            _note_short(handle, info, decoded)
            expected = resampled_length(decoded, info.sample_rate, target_sr)
            if written > expected:
                fh.truncate(expected * 4)
            elif written < expected:
                fh.write(bytes(4 * (expected - written)))  # librosa's zero padding: a few samples
            fh.flush()
        except BaseException:
            fh.close()
            raise
    return AudioSource(target_sr, expected, file=fh, info=info)
