"""The audio front end's schema: how a waveform becomes model input (``manifest.audio.frontend``).

It lives beside the code that computes it (``indexer/audio``), which reads it and nothing else
of the manifest; ``indexer.models.manifest`` embeds it in the whole model's schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogSpec(StrictModel):
    """Mel power -> model input.

    ``db`` (LAION): ``multiplier * log10(max(power, amin) / ref)``, optionally clipped ``top_db``
    below the max. ``log1p`` (the aisfx CNN): ``log10(1 + gain * power)``. ``ln_eps`` (YAMNet):
    ``ln(mel + amin)``. Any is then mapped through ``(value - offset) / divisor`` (aisfx's min-max
    scaling: offset 0, divisor 9.4578).
    """

    kind: Literal["db", "log1p", "ln_eps"] = "db"
    multiplier: float = 10.0
    amin: float = 1e-10
    ref: float = 1.0
    top_db: float | None = None
    gain: float = 1.0
    offset: float = 0.0
    divisor: float = 1.0

    @model_validator(mode="after")
    def _check(self) -> LogSpec:
        if self.divisor == 0 or self.gain <= 0:
            raise ValueError("log divisor must be non-zero and gain positive")
        return self


class AudioFrontend(StrictModel):
    """Waveform -> log-mel, and how a clip of any length becomes fixed-size model input."""

    sample_rate: int = 48_000
    clip_samples: int = 480_000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 480
    window: Literal["hann_periodic"] = "hann_periodic"
    # Where a ``win_length`` window sits inside its ``n_fft`` frame: ``center`` (torch.stft/librosa)
    # or ``left`` (tf.signal.stft: a frame starts with its window and is zero-filled to n_fft).
    window_align: Literal["center", "left"] = "center"
    center: bool = True
    pad_mode: Literal["reflect", "constant"] = "reflect"
    power: float = 2.0
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14_000.0
    mel_scale: Literal["slaney", "htk"] = "slaney"
    mel_norm: Literal["slaney", "l1"] | None = "slaney"  # l1: each filter sums to 1 (librosa norm=1)
    # ``hz``: triangles drawn on the frequency axis (librosa, torchaudio). ``mel``: triangles drawn
    # on the mel axis with the DC bin zeroed (tf.signal.linear_to_mel_weight_matrix, VGGish, YAMNet).
    mel_triangles: Literal["hz", "mel"] = "hz"
    log: LogSpec = LogSpec()
    # laion_clap rounds every waveform through int16 before the front end; transformers does not.
    int16_roundtrip: bool = False
    resampler: Literal["soxr_hq"] = "soxr_hq"
    # How clips shorter than ``clip_samples`` are filled: tiled then zero-filled (``repeatpad``,
    # LAION) or zero-filled (``zeropad``; patch models, see ``indexer.audio.patches``).
    short_policy: Literal["repeatpad", "zeropad"] = "repeatpad"
    # How longer clips are reduced: ``fusion`` (global view + 3 fixed local crops, fused model), a
    # deterministic ``center_crop`` of one clip for non-fusion models, or ``patch_mean``: the model
    # sees short patches and a file's vector pools its tower outputs over ALL of its patches,
    # whatever its length (YAMNet-style towers; ``clip_samples`` is then only the training crop).
    long_policy: Literal["fusion", "center_crop", "patch_mean"] = "center_crop"
    # patch_mean: patch length and hop in STFT frames (YAMNet: 96 and 48, 0.96 s every 0.48 s).
    patch_frames: int | None = None
    patch_hop_frames: int | None = None
    # Scale each clip (the repeat-padded short clip or the 10 s crop) to a peak of 1 before the
    # front end: loudness-invariant vectors, and the input the aisfx CNN was trained on.
    peak_normalize: bool = False

    @property
    def frame_span(self) -> int:
        """Samples one STFT frame reads from the (padded) waveform."""
        return self.win_length if self.window_align == "left" else self.n_fft

    @property
    def chunk_frames(self) -> int:
        """STFT frames in one clip (1001 for the public checkpoints)."""
        if self.center:
            return self.clip_samples // self.hop_length + 1
        return 1 + (self.clip_samples - self.frame_span) // self.hop_length

    @model_validator(mode="after")
    def _check(self) -> AudioFrontend:
        if self.win_length > self.n_fft:
            raise ValueError("win_length must not exceed n_fft")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError("need 0 <= f_min < f_max <= sample_rate/2")
        if self.peak_normalize and self.long_policy in ("fusion", "patch_mean"):
            raise ValueError("peak_normalize is defined per clip; fusion and patch views span the whole file")
        patched = self.long_policy == "patch_mean"
        if patched != (self.patch_frames is not None and self.patch_hop_frames is not None):
            raise ValueError("long_policy 'patch_mean' needs patch_frames and patch_hop_frames, and only it")
        if patched:
            if self.center or self.short_policy != "zeropad" or self.pad_mode != "constant":
                raise ValueError("patch_mean front ends frame without centring and zero-pad (short clips, last frames)")
            frames, hop = self.patch_frames, self.patch_hop_frames
            assert frames is not None and hop is not None  # both set when patched (checked above)
            if not 0 < hop <= frames:
                raise ValueError("need 0 < patch_hop_frames <= patch_frames")
            if (self.clip_samples - self.win_length) % self.hop_length or (self.chunk_frames - frames) % hop:
                raise ValueError("clip_samples must cover a whole number of patch hops")
        return self
