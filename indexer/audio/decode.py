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

Two decoders, one result: what libsndfile reads goes through soundfile; MPEG-4 (AAC, ALAC),
ADTS AAC, WMA and Matroska/WebM go through PyAV (:mod:`indexer.audio.pyav`), chosen from the
first bytes, or from the extension once libsndfile refused the file. Both hand float32
``(n, channels)`` samples to the same mono mix and resampler, behind the same limits and errors.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from indexer.audio.pyav import PYAV_EXTENSIONS, PyAVReader, open_pyav, sniff_demuxer
from indexer.audio.sndfile import SndfileReader, classify_open_error
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
)

__all__ = [
    "SUPPORTED_FORMATS_TEXT",
    "AudioInfo",
    "AudioSource",
    "DecodeLimits",
    "int16_roundtrip",
    "load_audio",
    "open_audio",
    "open_blocks",
    "prepare_waveform",
    "probe",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


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


Reader = SndfileReader | PyAVReader


@contextmanager
def _open_checked(path: PathLike, limits: DecodeLimits | None) -> Iterator[tuple[Reader, AudioInfo]]:
    """Open ``path`` with the decoder for its format, turning every failure into a typed AudioError."""
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
    ext = Path(p).suffix.lower()
    demuxer = sniff_demuxer(head)
    with decoder_output_captured():  # the caller's decoding runs inside too (it is under yield)
        if demuxer is None:
            try:
                handle = sf.SoundFile(p)
            except (sf.SoundFileError, RuntimeError) as exc:
                demuxer = PYAV_EXTENSIONS.get(ext)  # e.g. QuickTime without ftyp, AAC behind an ID3 tag
                if demuxer is None:
                    raise classify_open_error(p, head, exc) from exc
            else:
                with handle:
                    info = _checked_info(p, handle, limits)
                    yield SndfileReader(handle, info), info
                return
        with open_pyav(p, ext, demuxer) as (container, stream, facts):
            info = _checked_header(AudioInfo(path=p, **facts), limits)
            yield PyAVReader(p, container, stream, info, limits, demuxer), info


def _checked_header(info: AudioInfo, limits: DecodeLimits | None) -> AudioInfo:
    """PyAV's header facts checked like libsndfile's; an unknown length (0) is checked while decoding."""
    if info.sample_rate <= 0 or info.channels <= 0:  # FFmpeg found no usable codec parameters
        raise AudioDecodeError(
            info.path, f"damaged: its audio track declares {info.sample_rate} Hz and {info.channels} channels"
        )
    if limits is not None:
        _check_limits(info.path, info.sample_rate, info.channels, info.frames, limits)
    return info


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


def probe(path: PathLike, *, limits: DecodeLimits | None = None) -> AudioInfo:
    """Read the header only. Raises typed errors for missing/unreadable/unsupported/empty files,
    and, when ``limits`` is given, for a sample rate, channel count or duration beyond them."""
    with _open_checked(path, limits) as (_, info):
        return info


@contextmanager
def open_blocks(
    path: PathLike, block_frames: int, *, limits: DecodeLimits | None = None
) -> Iterator[tuple[AudioInfo, Iterator[np.ndarray]]]:
    """The header's facts and the raw float32 ``(n, channels)`` blocks of ``path``, from whichever
    decoder reads it, for callers that look at samples without a model (waveform thumbnails).
    Blocks may share one buffer: use each before asking for the next."""
    with _open_checked(path, limits) as (reader, info):
        yield info, reader.blocks(block_frames)


# ----------------------------------------------------------------------------- decoding


def _check_target_sr(target_sr: int) -> None:
    if int(target_sr) != target_sr or target_sr <= 0:
        raise ValueError(f"target_sr must be a positive integer, got {target_sr!r}")


def _decode_whole(reader: Reader, info: AudioInfo, target_sr: int) -> tuple[np.ndarray, int]:
    """The reference path: one float32 read, channel mean, one-shot soxr (librosa.load).
    Returns the waveform and the number of frames decoded."""
    data = reader.read_all()
    if len(data) == 0:
        raise EmptyAudioError(info.path, "no audio could be decoded")
    reader.note_short(len(data))
    bad = first_non_finite(data)
    if bad is not None:
        raise non_finite_error(info.path, bad, info.sample_rate)
    return resample_whole(to_mono(data), info.sample_rate, target_sr), len(data)


def _decoded_info(reader: Reader, info: AudioInfo, decoded: int) -> AudioInfo:
    """PyAV's header length is an estimate (lossy codecs, ADTS): report what was decoded."""
    if isinstance(reader, PyAVReader) and decoded != info.frames:
        return replace(info, frames=decoded, duration_s=decoded / info.sample_rate)
    return info


def _fits_in_memory(reader: Reader, info: AudioInfo, limits: DecodeLimits) -> bool:
    if isinstance(reader, PyAVReader) and reader.length_estimated:
        return False
    # frames == 0: PyAV could not tell the length from the header, so stream it
    return (
        0 < info.frames
        and info.duration_s <= limits.in_memory_max_s
        and info.frames * info.channels <= limits.in_memory_max_s * 96_000
    )


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
    with _open_checked(path, limits) as (reader, info):
        if _fits_in_memory(reader, info, limits):
            return _decode_whole(reader, info, target_sr)[0]
        chunks: list[np.ndarray] = []
        blocks = reader.blocks(_block_frames(info, limits))
        decoded = stream_decode(blocks, info.path, info.sample_rate, target_sr, chunks.append)
        if decoded == 0:
            raise EmptyAudioError(info.path, "no audio could be decoded")
        reader.note_short(decoded)
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
    with _open_checked(path, limits) as (reader, info):
        if _fits_in_memory(reader, info, limits):
            y, decoded = _decode_whole(reader, info, target_sr)
            return AudioSource(target_sr, len(y), samples=y, info=_decoded_info(reader, info, decoded))
        fh = tempfile.TemporaryFile(prefix="clapsearch-wave-", suffix=".f32", dir=tmp_dir)
        try:
            written = 0

            def sink(chunk: np.ndarray) -> None:
                nonlocal written
                fh.write(np.ascontiguousarray(chunk, dtype=np.float32).data.cast("B"))
                written += len(chunk)

            blocks = reader.blocks(_block_frames(info, limits))
            decoded = stream_decode(blocks, info.path, info.sample_rate, target_sr, sink)
            if decoded == 0:
                raise EmptyAudioError(info.path, "no audio could be decoded")
            reader.note_short(decoded)
            info = _decoded_info(reader, info, decoded)
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
