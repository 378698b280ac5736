"""Audio files in every format the README lists, written by PyAV (FFmpeg's encoders) from known
PCM, so the decode tests and bench/decoders.py compare what comes back with what went in.

``FORMATS`` is the one list: each row is a file extension, container, codec and whether the codec
is lossless; ``encode`` writes one. Video rows carry a tiny video track next to the audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Format:
    name: str  # test id
    suffix: str
    container: str  # FFmpeg muxer
    codec: str  # FFmpeg encoder
    lossless: bool
    video: str | None = None  # encoder of a small video track next to the audio
    sample_fmt: str | None = None  # the encoder's input sample format when not its first one
    bit_rate: int | None = None  # for encoders that have no default (wmav2)


FORMATS = [
    Format("m4a-aac", ".m4a", "ipod", "aac", lossless=False),
    Format("m4b-aac", ".m4b", "ipod", "aac", lossless=False),
    Format("m4a-alac", ".m4a", "ipod", "alac", lossless=True, sample_fmt="s16p"),
    Format("aac-adts", ".aac", "adts", "aac", lossless=False),
    Format("mp4-aac-video", ".mp4", "mp4", "aac", lossless=False, video="mpeg4"),
    Format("m4v-aac-video", ".m4v", "mp4", "aac", lossless=False, video="mpeg4"),
    Format("mov-alac", ".mov", "mov", "alac", lossless=True, sample_fmt="s16p"),
    Format("wma-wmav2", ".wma", "asf", "wmav2", lossless=False, bit_rate=128_000),
    Format("asf-wmav2", ".asf", "asf", "wmav2", lossless=False, bit_rate=128_000),
    Format("aifc-ima4", ".aifc", "aiff", "adpcm_ima_qt", lossless=False),
    Format("aiff-s24", ".aiff", "aiff", "pcm_s24be", lossless=True),
    Format("aifc-alaw", ".aifc", "aiff", "pcm_alaw", lossless=False),
    Format("aifc-sowt", ".aifc", "aiff", "pcm_s16le", lossless=True),
    Format("aifc-float", ".aifc", "aiff", "pcm_f32be", lossless=True),
    Format("mka-opus", ".mka", "matroska", "libopus", lossless=False),
    Format("mka-flac", ".mka", "matroska", "flac", lossless=True, sample_fmt="s16"),
    Format("mkv-vorbis-video", ".mkv", "matroska", "vorbis", lossless=False, video="mpeg4"),
    Format("webm-opus", ".webm", "webm", "libopus", lossless=False),
    Format("webm-vorbis-video", ".webm", "webm", "vorbis", lossless=False, video="libvpx"),
]
BY_NAME = {f.name: f for f in FORMATS}


def encode(
    path: Path,
    pcm: np.ndarray,
    sr: int,
    fmt: Format,
    *,
    video_frames: int = 4,
    audio: bool = True,
) -> Path:
    """Write ``pcm`` (float32, ``(n, channels)``) to ``path`` as ``fmt``; ``audio=False`` writes
    the video track only (a video with no sound)."""
    import av

    pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    if pcm.ndim == 1:
        pcm = pcm[:, None]
    channels = pcm.shape[1]
    layout = {1: "mono", 2: "stereo"}[channels]
    with av.open(str(path), "w", format=fmt.container) as out:
        vstream = None
        if fmt.video is not None:
            vstream = out.add_stream(fmt.video, rate=4)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        if audio:
            astream = out.add_stream(fmt.codec, rate=sr, layout=layout)
            if fmt.codec == "vorbis":
                astream.codec_context.options = {"strict": "experimental"}
            if fmt.sample_fmt:
                astream.format = fmt.sample_fmt
            if fmt.bit_rate:
                astream.bit_rate = fmt.bit_rate
            _write_audio(out, astream, pcm, sr, layout)
        if vstream is not None:
            for i in range(video_frames):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 4)
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode())
    return path


def _write_audio(out, stream, pcm: np.ndarray, sr: int, layout: str) -> None:
    """Feed the encoder 1 024-sample frames through FFmpeg's own converter (format and rate)."""
    import av

    resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=sr)
    step = 1024
    for start in range(0, len(pcm), step):
        block = np.ascontiguousarray(pcm[start : start + step].T)  # planar float
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = sr, start, Fraction(1, sr)
        for converted in resampler.resample(frame):
            out.mux(stream.encode(converted))
    for converted in resampler.resample(None):
        out.mux(stream.encode(converted))
    out.mux(stream.encode(None))
