"""The soundfile (libsndfile) side of decoding: its reader, and what a refusal means.

libsndfile reads WAV, FLAC, OGG/Vorbis, Opus, MP3 and AIFF/AIFC (plus CAF, W64, RF64, AU...);
:mod:`indexer.audio.decode` sends everything else to PyAV before libsndfile sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from indexer.audio.stream import SUPPORTED_FORMATS_TEXT, sndfile_blocks
from indexer.errors import AudioDecodeError, UnsupportedFormatError

if TYPE_CHECKING:
    from indexer.audio.decode import AudioInfo

log = logging.getLogger("indexer.audio.decode")

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
# Common containers neither decoder reads: named so the user knows to convert, not to re-download.
# (MPEG-4, ASF, Matroska/WebM and ADTS AAC go to PyAV before this is consulted.)
_UNSUPPORTED_EXT = {
    ".amr": "AMR",
    ".ape": "Monkey's Audio",
    ".wv": "WavPack",
    ".ac3": "AC-3",
    ".dts": "DTS",
    ".mid": "MIDI",
    ".midi": "MIDI",
    ".3gp": "3GPP",
    ".ra": "RealAudio",
    ".rm": "RealMedia",
    ".dsf": "DSD",
    ".dff": "DSD",
    ".mpc": "Musepack",
    ".alac": "ALAC",
}
_MAGIC = [  # (offset, bytes, name): sniffed only after libsndfile has refused the file
    (0, b"#!AMR", "AMR"),
    (0, b"MAC ", "Monkey's Audio"),
    (0, b"wvpk", "WavPack"),
    (0, b"MThd", "MIDI"),
    (0, b"ADIF", "AAC (ADIF)"),
    (0, b".RMF", "RealMedia"),
    (0, b"DSD ", "DSD"),
    (0, b"MPCK", "Musepack"),
]


def classify_open_error(path: str, head: bytes, exc: Exception) -> Exception:
    """Decide whether a file libsndfile refused is exotic (unsupported) or damaged (decode)."""
    detail = getattr(exc, "error_string", None) or str(exc)
    if "does not exist" in detail:  # libsndfile's mpg123 glue says this for garbage .mp3 files
        detail = "no decodable audio stream found"
    hint = f"supported formats: {SUPPORTED_FORMATS_TEXT}"
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return UnsupportedFormatError(path, f"{name} files are not supported ({hint})")
    ext = Path(path).suffix.lower()
    if ext in _UNSUPPORTED_EXT:
        return UnsupportedFormatError(path, f"{ext} ({_UNSUPPORTED_EXT[ext]}) files are not supported ({hint})")
    if ext in _SUPPORTED_EXT:
        return AudioDecodeError(path, f"not a valid {_SUPPORTED_EXT[ext]} file, or it is damaged ({detail})")
    if "not recognised" in detail.lower():
        return UnsupportedFormatError(path, f"not a recognised audio format ({hint})")
    return AudioDecodeError(path, f"could not be opened as audio ({detail})")


class SndfileReader:
    """An open libsndfile handle, read whole or in blocks (the PyAV reader's twin)."""

    def __init__(self, handle: sf.SoundFile, info: AudioInfo):
        self.handle, self.info = handle, info

    def read_all(self) -> np.ndarray:
        try:
            if self.handle.subtype == "PCM_16":
                # libsndfile turns 16-bit samples into float one at a time (``sample * (1 / 0x8000)``,
                # exact: the scale is a power of two); the same product in numpy is bit-identical and
                # 4-7x faster (60 s mono WAV: 1 ms instead of 4-8 ms; tests/indexer/test_decode.py).
                raw = self.handle.read(dtype="int16", always_2d=True)
                return np.multiply(raw, np.float32(1 / 0x8000), dtype=np.float32)
            return self.handle.read(dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioDecodeError(self.info.path, f"decoding failed ({exc})") from exc

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        return sndfile_blocks(self.handle, self.info.path, block_frames)

    def note_short(self, decoded: int) -> None:
        """Log (not fail) when a header promised more audio than the file holds."""
        info = self.info
        if decoded < info.frames:
            log.warning(
                "%s: truncated? decoded %d of the %d frames the header announces", info.path, decoded, info.frames
            )
        elif "should be" in self.handle.extra_info:
            log.warning(
                "%s: truncated? the header announces more data than the file holds; using the %d decodable frames",
                info.path,
                decoded,
            )
