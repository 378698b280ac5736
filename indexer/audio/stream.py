"""Sample-level building blocks shared by the whole-file and the block-streaming decoders.

The public CLAP checkpoints were trained on audio loaded with ``librosa.load(path, sr=48000)``:
libsndfile decodes to float32, channels are averaged, and soxr resamples with its "HQ" recipe,
then the result is padded/trimmed to ``ceil(n * target / orig)`` samples. Every function here
reproduces one of those steps *exactly* (same numpy expression, same memory layout), so that our
embeddings match the reference bit for bit without importing librosa.

The streaming decoder relies on two facts checked by the tests: averaging channels is a
per-sample operation (so doing it block by block changes nothing), and ``soxr.ResampleStream``
fed block by block (with a final ``last=True`` flush) produces exactly the samples that the
one-shot ``soxr.resample`` produces for the whole signal.

:class:`AudioSource` (the decoded waveform, in RAM or in a temporary file) lives here too, so that
``decode.py`` is only about turning files into samples.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from math import ceil
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import soundfile as sf
import soxr

from indexer.errors import AudioDecodeError, AudioError, InvalidSamplesError

if TYPE_CHECKING:
    from indexer.audio.decode import AudioInfo

#: Shown to users whenever a file cannot be opened, so they know what to convert to.
SUPPORTED_FORMATS_TEXT = (
    "WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF/AIFC, M4A/M4B/MP4/M4V/MOV (AAC, ALAC), AAC, WMA/ASF, "
    "MKA/MKV/WebM (Opus, Vorbis, FLAC)"
)

#: Upper bound on the samples (frames x channels) held in one streaming block, so that a block
#: of a 768 kHz, 64-channel file stays around 8 MB instead of 10 s x 768 000 x 64 x 4 B = 2 GB.
MAX_BLOCK_SAMPLES = 1 << 21


#: Set in ingest's decode worker processes only. There fd 2 carries nothing but what native
#: decoders print about the file at hand (libmpg123: "Note: Illegal Audio-MPEG-Header..."),
#: so it is captured into the file's error; a CLI or server process keeps its stderr, because
#: other threads write to it too.
CAPTURE_DECODER_OUTPUT = False
_CAPTURED_MAX_CHARS = 400


@contextmanager
def decoder_output_captured() -> Iterator[None]:
    """Redirect fd 2 while decoding (when ``CAPTURE_DECODER_OUTPUT``); an ``AudioError`` raised
    inside gets what the libraries printed appended to its reason; output of a file that
    decodes fine is dropped (it is the library's chatter about a file that is usable)."""
    if not CAPTURE_DECODER_OUTPUT:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        restored = False
        try:
            yield
        except AudioError as exc:
            os.dup2(saved, 2)
            restored = True
            sink.seek(0)
            said = " / ".join(
                line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip()
            )
            if said:
                if len(said) > _CAPTURED_MAX_CHARS:
                    said = said[:_CAPTURED_MAX_CHARS] + "..."
                exc.reason = f"{exc.reason}; the decoder said: {said}"
                exc.args = (f"{exc.path if exc.path is not None else '<audio array>'}: {exc.reason}",)
            raise
        finally:
            if not restored:
                os.dup2(saved, 2)
            os.close(saved)


def to_mono(frames: np.ndarray) -> np.ndarray:
    """Average an ``(n, channels)`` float32 block to ``(n,)`` exactly as ``librosa.to_mono`` does.

    librosa transposes soundfile's ``(n, channels)`` array and takes ``np.mean(y, axis=0)``; we
    use the very same expression on the very same layout, because a different reduction order
    (e.g. ``mean(axis=1)``) can differ in the last bit for 8+ channels.
    """
    if frames.ndim == 1:
        return frames
    if frames.shape[1] == 1:
        return frames[:, 0]
    return np.mean(frames.T, axis=0)


def resampled_length(num_frames: int, orig_sr: int, target_sr: int) -> int:
    """Length librosa forces the resampled signal to (``fix=True``), with its float math.

    ``ceil(n * (target / orig))`` can exceed the exact ratio by one sample (60 s at 44.1 kHz ->
    2 880 001 samples at 48 kHz, the last a padded zero); we keep the quirk to stay bit-exact.
    """
    if orig_sr == target_sr:
        return num_frames
    return int(ceil(num_frames * (float(target_sr) / orig_sr)))


def fix_length(y: np.ndarray, size: int) -> np.ndarray:
    """Trim, or zero-pad at the end, to ``size`` samples (librosa's ``util.fix_length``)."""
    if len(y) > size:
        return y[:size]
    if len(y) < size:
        return np.pad(y, (0, size - len(y)))
    return y


def resample_whole(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """One-shot resampling of a mono float32 signal, identical to ``librosa.resample`` (soxr_hq)."""
    if orig_sr == target_sr:
        return y
    y_hat = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")
    y_hat = fix_length(y_hat, resampled_length(len(y), orig_sr, target_sr))
    return np.asarray(y_hat, dtype=np.float32)


# Float files may go past full scale (+-1), but not by 120 dB: a sample of 1e30 is finite yet its
# power overflows float32 in any front end, and the file came out as a NaN vector in the index.
MAX_SAMPLE_MAGNITUDE = 1e6


def first_non_finite(x: np.ndarray) -> int | None:
    """Index (along axis 0) of the first NaN/Inf sample, or of one beyond +-MAX_SAMPLE_MAGNITUDE;
    None when all are usable.

    ``min`` and ``max`` are a cheap, allocation-free screen (NaN propagates through both); only
    a failed screen pays for the exact search.
    """
    if x.size == 0:
        return None
    low, high = np.min(x), np.max(x)
    if -MAX_SAMPLE_MAGNITUDE <= low and high <= MAX_SAMPLE_MAGNITUDE:
        return None
    bad = ~(np.abs(x) <= MAX_SAMPLE_MAGNITUDE)  # NaN compares false: it is bad too
    if bad.ndim > 1:
        bad = bad.any(axis=tuple(range(1, bad.ndim)))
    return int(np.argmax(bad))


def non_finite_error(path: str | None, index: int, sample_rate: int) -> InvalidSamplesError:
    """The error for a NaN/Inf/absurd sample, saying where it is so the user can inspect the file."""
    return InvalidSamplesError(
        path,
        f"contains NaN, infinite or absurdly large samples (beyond +-{MAX_SAMPLE_MAGNITUDE:g}; "
        f"first at {index / sample_rate:.3f} s)",
    )


def block_frames_for(sample_rate: int, channels: int, block_s: float) -> int:
    """Frames per streaming block: ``block_s`` seconds, capped by :data:`MAX_BLOCK_SAMPLES`."""
    frames = int(block_s * sample_rate)
    return max(1, min(frames, MAX_BLOCK_SAMPLES // max(1, channels)))


def sndfile_blocks(handle: sf.SoundFile, path: str | None, block_frames: int) -> Iterator[np.ndarray]:
    """Up to ``handle.frames`` frames (as ``librosa.load`` reads), ``block_frames`` at a time
    into one reused float32 ``(n, channels)`` buffer; stops early when the file holds less."""
    sr = handle.samplerate
    buf = np.empty((block_frames, handle.channels), dtype=np.float32)
    done = 0
    left = handle.frames
    while left > 0:
        want = min(block_frames, left)
        try:
            block = handle.read(want, dtype="float32", always_2d=True, out=buf[:want])
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioDecodeError(path, f"decoding failed after {done / sr:.2f} s: {exc}") from exc
        if len(block) == 0:
            return  # the header promised more than the file holds: keep what was decodable
        yield block
        done += len(block)
        left -= len(block)


def stream_decode(
    blocks: Iterable[np.ndarray],
    path: str | None,
    sample_rate: int,
    target_sr: int,
    sink: Callable[[np.ndarray], None],
) -> int:
    """Mix float32 ``(n, channels)`` ``blocks`` to mono at ``target_sr`` in bounded memory, feeding ``sink``.

    The blocks come from either decoder (:func:`sndfile_blocks`, or PyAV's reader) and may reuse
    one buffer: each is validated, mixed to mono and pushed through a streaming soxr resampler
    before the next is asked for. ``sink`` receives fresh arrays it may keep. The caller applies
    :func:`resampled_length` to the total afterwards (the stream may be a sample short of it).

    Returns the number of input frames decoded. Raises :class:`InvalidSamplesError` on NaN/Inf
    samples; the decoders raise their own typed errors.
    """
    sr = sample_rate
    resampler = None if sr == target_sr else soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ")
    done = 0
    for block in blocks:
        n = len(block)
        bad = first_non_finite(block)
        if bad is not None:
            raise non_finite_error(path, done + bad, sr)
        mono = to_mono(block)
        if resampler is None:
            sink(mono.copy() if np.shares_memory(mono, block) else mono)
        else:
            sink(resampler.resample_chunk(np.ascontiguousarray(mono)))
        done += n
    if resampler is not None:
        sink(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return done


class AudioSource:
    """A decoded mono float32 waveform, in RAM or in an anonymous temporary file.

    ``read(start, stop)`` is random access either way, so chunkers can walk hours of audio
    without holding it. The temporary file is created with :func:`tempfile.TemporaryFile`
    (unlinked at once on POSIX), so it disappears on :meth:`close`, on garbage collection and
    even if the process is killed. Reads are thread-safe.
    """

    def __init__(
        self,
        sample_rate: int,
        num_samples: int,
        *,
        samples: np.ndarray | None = None,
        file: BinaryIO | None = None,
        info: AudioInfo | None = None,
    ) -> None:
        if (samples is None) == (file is None):
            raise ValueError("give exactly one of samples= or file=")
        self.sample_rate = int(sample_rate)
        self.num_samples = int(num_samples)
        self.info = info
        self._samples = samples
        self._file = file
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_array(cls, waveform: np.ndarray, sample_rate: int) -> AudioSource:
        """Wrap an already prepared 1-D waveform (e.g. from :func:`prepare_waveform`)."""
        w = np.ascontiguousarray(waveform, dtype=np.float32)
        if w.ndim != 1:
            raise ValueError(f"expected a 1-D waveform, got shape {w.shape}")
        return cls(sample_rate, len(w), samples=w)

    @property
    def path(self) -> str | None:
        return None if self.info is None else self.info.path

    @property
    def in_memory(self) -> bool:
        return self._samples is not None

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return self.num_samples

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as a new float32 array, clamped to ``[0, num_samples)``.

        No zero-filling: asking beyond the ends returns fewer (possibly zero) samples; negative
        indices mean "before the start", not Python's count-from-the-end.
        """
        if self._closed:
            raise ValueError("read from a closed AudioSource")
        start, stop = max(0, int(start)), min(self.num_samples, int(stop))
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        if self._samples is not None:
            return self._samples[start:stop].copy()
        out = np.empty(stop - start, dtype=np.float32)
        with self._lock:
            assert self._file is not None
            self._file.seek(start * 4)
            got = self._file.readinto(out)  # type: ignore[attr-defined]
        if got != out.nbytes:
            raise OSError(f"temporary waveform file ended early ({got} of {out.nbytes} bytes)")
        return out

    def view(self, start: int, stop: int) -> np.ndarray:
        """:meth:`read` without the copy where the waveform is in RAM: a read-only view of it
        (the front end cuts frames out of its reads and never keeps them; a 60 s file's fused
        views read nearly all of it, 11.5 MB). From a temporary file: a new array, as ``read``."""
        if self._samples is None or self._closed:
            return self.read(start, stop)
        start, stop = max(0, int(start)), min(self.num_samples, int(stop))
        part = self._samples[start:stop] if stop > start else np.zeros(0, dtype=np.float32)
        part.flags.writeable = False
        return part

    def close(self) -> None:
        """Release the waveform; closing the temporary file deletes it. Idempotent."""
        self._closed = True
        self._samples = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> AudioSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self.in_memory else ("closed" if self._closed else "disk")
        return f"AudioSource({self.path or '<array>'}, {self.num_samples} samples at {self.sample_rate} Hz, {where})"
