"""File or array -> model input views, exactly as serving computes them.

The one path from audio to :class:`ClipViews` that the encoder, the training data pipeline and
evaluation share, so a model sees identical features in training and in serving:
decode/resample (``indexer.audio.decode``) -> optional int16 round trip (laion checkpoints) ->
the 10 s rule (``indexer.audio.clip``).

Training may pass ``choose``: called with the decoded length in samples, it returns keyword
overrides for :func:`clip_views` (``crop_start`` / ``fusion_starts``), i.e. laion_clap's random
crop and random fusion chunks. Serving never passes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from indexer.audio.clip import ClipViews, clip_views
from indexer.audio.decode import DecodeLimits, int16_roundtrip, open_audio, prepare_waveform
from indexer.audio.spec import AudioFrontend

# choose(num_samples) -> {"crop_start": ..., "fusion_starts": ...} (either may be absent)
ViewChooser = Callable[[int], dict]


def reader_views(read, num_samples: int, spec: AudioFrontend, choose: ViewChooser | None = None) -> ClipViews:
    """Views of audio already at the model's rate, given as ``read(start, stop)`` (e.g. one
    window of an :class:`~indexer.audio.stream.AudioSource`)."""
    if spec.int16_roundtrip:
        raw = read
        read = lambda a, b: int16_roundtrip(raw(a, b))  # noqa: E731
    overrides = choose(num_samples) if choose is not None else {}
    return clip_views(read, num_samples, spec, **overrides)


def file_views(
    path: str | Path,
    spec: AudioFrontend,
    *,
    limits: DecodeLimits = DecodeLimits(),
    choose: ViewChooser | None = None,
) -> tuple[ClipViews, float]:
    """Views of one file, decoded with bounded memory; returns ``(views, duration_s)``."""
    with open_audio(path, spec.sample_rate, limits=limits) as source:
        views = reader_views(source.view, source.num_samples, spec, choose)
        return views, source.num_samples / spec.sample_rate


def array_views(
    samples: np.ndarray,
    sample_rate: int,
    spec: AudioFrontend,
    *,
    name: str | None = None,
    limits: DecodeLimits = DecodeLimits(),
    choose: ViewChooser | None = None,
) -> ClipViews:
    """Views of an in-memory waveform at any rate, ``(n,)`` or ``(n, channels)``."""
    wave = prepare_waveform(samples, sample_rate, spec.sample_rate, name=name, limits=limits)
    return reader_views(lambda a, b: wave[a:b], wave.shape[0], spec, choose)
