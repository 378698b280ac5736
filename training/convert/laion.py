"""laion_clap ``.pt`` checkpoint -> transformers ``ClapModel`` (+ the front end it expects).

The public ``.pt`` files carry no config: everything is read back from tensor shapes, and what the
weights cannot tell (text attention heads, LayerNorm eps) comes from an optional RoBERTa config or
documented defaults. Every tensor is either mapped, or dropped for a stated reason (recorded in
``notes``); any other surplus or missing tensor is an error, because a silently skipped tensor is
a model that embeds garbage without complaint.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import ModelError
from indexer.models.manifest import AudioFrontend, sha256_file
from training.convert import ConvertedModel
from training.convert.layout import (
    HF_ONLY_BUFFERS,
    describe_key_problems,
    laion_to_hf,
    split_dropped,
    unwrap_laion,
)

if TYPE_CHECKING:
    from torch import Tensor

LAION_MAX_TEXT_LENGTH = 77  # laion_clap pads/truncates every caption to exactly 77 tokens
DEFAULT_SPEC_SIZE = 256  # HTSAT input image side for every public checkpoint
MEL_TOLERANCE = 1e-5
_A = "audio_branch."
_T = "text_branch."


@dataclass
class AudioDetection:
    """What the audio tower's tensor shapes say about its architecture."""

    config: dict[str, Any]  # ClapAudioConfig keyword arguments
    architecture: str  # htsat-tiny / htsat-base / htsat-custom
    fusion: bool
    notes: list[str] = field(default_factory=list)


def _need(sd: Mapping[str, Tensor], key: str, what: str) -> Tensor:
    if key not in sd:
        raise ModelError(f"laion checkpoint is missing {key!r} ({what})")
    return sd[key]


def audio_architecture_name(embed: int, depths: list[int]) -> str:
    """The names the manifest uses for the two public HTSAT sizes."""
    if embed == 96 and depths == [2, 2, 6, 2]:
        return "htsat-tiny"
    if embed == 128 and depths == [2, 2, 12, 2]:
        return "htsat-base"
    return "htsat-custom"


def detect_audio_config(sd: Mapping[str, Tensor]) -> AudioDetection:
    """Read the HTSAT hyper-parameters from laion-named tensors (``audio_branch.*``, projections).

    Only shapes are read, so the tensors may live on the ``meta`` device. Keys of other towers and
    the dropped tensors may be present: they are ignored except the shifted-window ``attn_mask``s,
    which pin the input size.
    """
    notes: list[str] = []
    proj = _need(sd, _A + "patch_embed.proj.weight", "patch embedding")
    embed, in_ch, p0, p1 = (int(x) for x in proj.shape)
    depths, heads, windows = _swin_stages(sd)
    final = embed * 2 ** (len(depths) - 1)
    norm = _need(sd, _A + "norm.weight", "final LayerNorm")
    if int(norm.shape[0]) != final:
        raise ModelError(f"audio final width {int(norm.shape[0])} != patch width {embed} * 2^{len(depths) - 1}")
    a_proj = _need(sd, "audio_projection.0.weight", "audio projection")
    if int(a_proj.shape[1]) != final:
        raise ModelError(f"audio_projection takes {int(a_proj.shape[1])} inputs but the tower gives {final}")
    fc1 = _need(sd, _A + "layers.0.blocks.0.mlp.fc1.weight", "Swin MLP")
    mel_bins = int(_need(sd, _A + "bn0.weight", "input BatchNorm").shape[0])

    fusion_keys = [
        k for k in sd if k.startswith(_A + "patch_embed.fusion_model.") or k.startswith(_A + "patch_embed.mel_conv2d.")
    ]
    fusion = bool(fusion_keys)
    aff_r = 4
    if fusion:
        local0 = sd.get(_A + "patch_embed.fusion_model.local_att.0.weight")
        if local0 is None or _A + "patch_embed.mel_conv2d.weight" not in sd or in_ch != 1:
            raise ModelError(
                "laion checkpoint uses a fusion type other than 'aff_2d' "
                "(transformers' ClapModel implements only aff_2d)"
            )
        aff_r = embed // int(local0.shape[0])

    spec_size = _spec_size_from_masks(sd, depths, windows, p0, notes)
    config = dict(
        window_size=windows[0],
        num_mel_bins=mel_bins,
        spec_size=spec_size,
        patch_size=p0 if p0 == p1 else [p0, p1],
        patch_stride=[p0, p1],
        hidden_size=final,
        projection_dim=int(a_proj.shape[0]),
        depths=depths,
        num_attention_heads=heads,
        enable_fusion=fusion,
        fusion_type="aff_2d" if fusion else None,
        patch_embed_input_channels=in_ch,
        patch_embeds_hidden_size=embed,
        enable_patch_layer_norm=_A + "patch_embed.norm.weight" in sd,
        qkv_bias=_A + "layers.0.blocks.0.attn.qkv.bias" in sd,
        mlp_ratio=float(fc1.shape[0]) / embed,
        aff_block_r=aff_r,
        num_hidden_layers=len(depths),
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )
    return AudioDetection(config, audio_architecture_name(embed, depths), fusion, notes)


def _swin_stages(sd: Mapping[str, Tensor]) -> tuple[list[int], list[int], list[int]]:
    """Blocks, attention heads and window size of each Swin stage, read from the bias tables."""
    stages: dict[int, set[int]] = {}
    for key in sd:
        if m := re.match(r"^audio_branch\.layers\.(\d+)\.blocks\.(\d+)\.", key):
            stages.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not stages or sorted(stages) != list(range(len(stages))):
        raise ModelError(f"laion checkpoint: audio stages are not numbered 0..n-1: {sorted(stages)}")
    depths = []
    for i in range(len(stages)):
        blocks = sorted(stages[i])
        if blocks != list(range(len(blocks))):
            raise ModelError(f"laion checkpoint: stage {i} blocks are not numbered 0..n-1: {blocks}")
        depths.append(len(blocks))
    heads, windows = [], []
    for i, depth in enumerate(depths):
        stage_heads = set()
        for j in range(depth):
            table = _need(sd, f"{_A}layers.{i}.blocks.{j}.attn.relative_position_bias_table", "Swin bias")
            side = math.isqrt(int(table.shape[0]))
            if side * side != table.shape[0] or side % 2 == 0:
                raise ModelError(f"stage {i} block {j}: bias table of {table.shape[0]} rows is not (2w-1)^2")
            stage_heads.add(int(table.shape[1]))
            if j == 0:
                windows.append((side + 1) // 2)
        if len(stage_heads) != 1:
            raise ModelError(f"stage {i}: blocks disagree on the number of heads {sorted(stage_heads)}")
        heads.append(stage_heads.pop())
    return depths, heads, windows


def _spec_size_from_masks(
    sd: Mapping[str, Tensor], depths: list[int], windows: list[int], stride: int, notes: list[str]
) -> int:
    """Shifted-window masks are (nW, w^2, w^2) with nW = (side_i / w)^2: they pin the input size."""
    for i, depth in enumerate(depths):
        for j in range(depth):
            mask = sd.get(f"{_A}layers.{i}.blocks.{j}.attn_mask")
            if mask is None or mask.ndim != 3 or mask.shape[1] != windows[i] ** 2:
                continue
            per_side = math.isqrt(int(mask.shape[0]))
            spec = per_side * windows[i] * (2**i) * stride
            if spec != DEFAULT_SPEC_SIZE:
                notes.append(f"spec_size {spec} read from the stage-{i} attention mask")
            return spec
    notes.append(f"no shifted-window mask in the checkpoint; assumed spec_size {DEFAULT_SPEC_SIZE}")
    return DEFAULT_SPEC_SIZE


def _read_text_config(text_config: str | Path | dict | None) -> dict[str, Any]:
    if text_config is None:
        return {}
    if isinstance(text_config, Mapping):
        return dict(text_config)
    path = Path(text_config)
    if path.is_dir():
        path = path / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read text_config {str(text_config)!r}: {exc}") from exc


def detect_text_config(
    sd: Mapping[str, Tensor], text_config: str | Path | dict | None, notes: list[str]
) -> dict[str, Any]:
    """ClapTextConfig kwargs from the RoBERTa tensors, plus the heads/eps the weights lack."""
    given = _read_text_config(text_config)
    if given.get("model_type") not in (None, "roberta", "clap_text_model"):
        raise ModelError(f"text_config is a {given['model_type']!r} config; laion checkpoints need RoBERTa")
    words = sd.get(_T + "embeddings.word_embeddings.weight")
    if words is None:
        raise ModelError(
            "laion checkpoint has no RoBERTa text tower (text_branch.embeddings.word_embeddings); "
            "only tmodel='roberta' checkpoints are supported"
        )
    vocab, hidden = (int(x) for x in words.shape)
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"^text_branch\.encoder\.layer\.(\d+)\.", k))}
    if not layers or sorted(layers) != list(range(len(layers))):
        raise ModelError(f"laion checkpoint: text layers are not numbered 0..n-1: {sorted(layers)}")
    detected = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        intermediate_size=int(_need(sd, _T + "encoder.layer.0.intermediate.dense.weight", "FFN").shape[0]),
        max_position_embeddings=int(_need(sd, _T + "embeddings.position_embeddings.weight", "positions").shape[0]),
        type_vocab_size=int(_need(sd, _T + "embeddings.token_type_embeddings.weight", "token types").shape[0]),
    )
    for key, value in detected.items():
        if key in given and int(given[key]) != value:
            raise ModelError(f"text_config says {key}={given[key]} but the checkpoint's weights have {value}")
    if "num_attention_heads" in given:
        heads = int(given["num_attention_heads"])
    else:
        if hidden % 64:
            raise ModelError(
                f"text width {hidden} is not a multiple of 64; pass text_config=... to give the "
                "number of attention heads"
            )
        heads = hidden // 64
        notes.append(f"text attention heads not in the weights: assumed head size 64 -> {heads} heads")
    if hidden % heads:
        raise ModelError(f"text width {hidden} is not divisible by {heads} attention heads")
    if not given and detected["type_vocab_size"] != 1:
        raise ModelError(
            f"text tower has {detected['type_vocab_size']} token types (BERT-like?); "
            "RoBERTa has 1. Pass text_config=... if this really is a RoBERTa tower"
        )
    eps = float(given.get("layer_norm_eps", 1e-5))
    if "layer_norm_eps" not in given:
        notes.append("text layer_norm_eps not in the weights: assumed RoBERTa's 1e-5")
    return dict(
        detected,
        num_attention_heads=heads,
        layer_norm_eps=eps,
        hidden_act=given.get("hidden_act", "gelu"),
        pad_token_id=int(given.get("pad_token_id", 1)),
        bos_token_id=int(given.get("bos_token_id", 0)),
        eos_token_id=int(given.get("eos_token_id", 2)),
    )


def laion_frontend(fusion: bool, n_mels: int = 64) -> AudioFrontend:
    """The laion_clap preprocessing: torchlibrosa slaney mel for non-fusion models, torchaudio's
    HTK mel for fusion models (that is what each was trained with), int16 round trip for both."""
    common = dict(
        sample_rate=48_000,
        clip_samples=480_000,
        n_fft=1024,
        win_length=1024,
        hop_length=480,
        n_mels=n_mels,
        f_min=50.0,
        f_max=14_000.0,
        int16_roundtrip=True,
    )
    if fusion:
        return AudioFrontend(**common, mel_scale="htk", mel_norm=None, long_policy="fusion")
    return AudioFrontend(**common, mel_scale="slaney", mel_norm="slaney", long_policy="center_crop")


def mel_bank(frontend: AudioFrontend, *, scale: str, norm: str | None):
    """(n_fft//2+1, n_mels) float64 filter bank for ``frontend``'s numbers."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=frontend.n_fft // 2 + 1,
        num_mel_filters=frontend.n_mels,
        min_frequency=frontend.f_min,
        max_frequency=frontend.f_max,
        sampling_rate=frontend.sample_rate,
        norm=norm,
        mel_scale=scale,
    )


def check_stored_frontend(raw: Mapping[str, Tensor], frontend: AudioFrontend, fusion: bool, notes: list[str]) -> None:
    """Compare the checkpoint's own STFT kernels and mel matrix with the front end we will use.

    The fusion checkpoints still carry torchlibrosa's slaney ``melW`` although their fusion input
    is computed with torchaudio's HTK bank; for them the stored matrix can only confirm the shared
    numbers (rate, FFT size, band edges), so it is compared with the slaney bank.
    """
    import numpy as np

    mel = raw.get(_A + "logmel_extractor.melW")
    if mel is None:
        notes.append("checkpoint has no logmel_extractor.melW; mel filter bank not verified")
    else:
        scale, norm = ("slaney", "slaney") if fusion else (frontend.mel_scale, frontend.mel_norm)
        want = mel_bank(frontend, scale=scale, norm=norm)
        got = mel.detach().double().cpu().numpy()
        if got.shape != want.shape:
            raise ModelError(
                f"checkpoint mel matrix is {tuple(got.shape)}, front end expects {want.shape}: "
                "the checkpoint was trained with different preprocessing"
            )
        err = float(np.abs(got - want).max())
        if err > MEL_TOLERANCE:
            raise ModelError(
                f"checkpoint mel matrix differs from the {scale}/{norm} bank at "
                f"{frontend.sample_rate} Hz, {frontend.f_min}-{frontend.f_max} Hz by {err:.3g}: "
                "the checkpoint was trained with different preprocessing"
            )
        notes.append(f"stored melW matches the {scale}/{norm} mel bank (max abs diff {err:.1e})")
    real = raw.get(_A + "spectrogram_extractor.stft.conv_real.weight")
    imag = raw.get(_A + "spectrogram_extractor.stft.conv_imag.weight")
    if real is None or imag is None:
        return
    n = np.arange(frontend.n_fft)
    k = np.arange(frontend.n_fft // 2 + 1)[:, None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / frontend.win_length)  # periodic Hann, win == n_fft here
    phase = 2 * np.pi * k * n / frontend.n_fft
    for name, tensor, want in (
        ("real", real, np.cos(phase) * hann),
        ("imag", imag, -np.sin(phase) * hann),
    ):
        got = tensor.detach().double().cpu().numpy()
        if got.shape != (want.shape[0], 1, want.shape[1]):
            raise ModelError(
                f"checkpoint STFT kernel ({name}) is {tuple(got.shape)}; expected n_fft "
                f"{frontend.n_fft}: different preprocessing"
            )
        err = float(np.abs(got[:, 0, :] - want).max())
        if err > MEL_TOLERANCE:
            raise ModelError(
                f"checkpoint STFT kernel ({name}) is not a periodic-Hann n_fft={frontend.n_fft} "
                f"DFT (max abs diff {err:.3g}): different preprocessing"
            )


def _summarise_dropped(dropped: Mapping[str, str]) -> list[str]:
    by_reason = Counter(dropped.values())
    out = []
    for reason, count in by_reason.items():
        keys = sorted(k for k, r in dropped.items() if r == reason)
        example = keys[0] if count == 1 else f"{keys[0]}, ... ({count} tensors)"
        out.append(f"dropped {example}: {reason}")
    return out


def load_state_dict_checked(model, mapped: Mapping[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a readable ModelError listing what does not fit."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(mapped) & set(expected))
        if tuple(mapped[k].shape) != tuple(expected[k].shape)
    ]
    problems = describe_key_problems({"missing": missing, "unexpected": unexpected, "shape mismatch": shapes})
    if problems:
        raise ModelError(f"{source}: checkpoint does not fit the detected architecture; " + "; ".join(problems))
    model.load_state_dict(dict(mapped), strict=True)


def load_laion_checkpoint(
    path: str | Path,
    *,
    text_config: str | Path | dict | None = None,
    tokenizer_dir: str | Path | None = None,
) -> ConvertedModel:
    """Convert a laion_clap ``.pt`` into an eval-mode float32 ``ClapModel``.

    ``text_config``: a RoBERTa ``config.json`` (path, its folder, or a dict) for the facts the
    weights lack (attention heads, LayerNorm eps); without it head size 64 and eps 1e-5 are assumed.
    ``tokenizer_dir``: required, because laion checkpoints carry no tokenizer.
    """
    import torch
    from transformers import ClapConfig, ClapModel

    path = Path(path)
    if tokenizer_dir is None:
        raise ModelError(
            "laion checkpoints carry no tokenizer; pass tokenizer_dir=... "
            "(a folder with tokenizer.json, e.g. roberta-base)"
        )
    tok = Path(tokenizer_dir)
    if not ((tok / "tokenizer.json").is_file() or ((tok / "vocab.json").is_file() and (tok / "merges.txt").is_file())):
        raise ModelError(f"tokenizer_dir {str(tok)!r} holds neither tokenizer.json nor vocab.json + merges.txt")
    if not path.is_file():
        raise ModelError(f"laion checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types; all mean "not loadable safely"
        raise ModelError(f"cannot load {str(path)!r} as a weights-only torch checkpoint: {exc}") from exc
    raw = unwrap_laion(obj)
    kept, dropped = split_dropped(raw)
    notes = _summarise_dropped(dropped)

    audio = detect_audio_config(raw)  # raw: the dropped attn_masks still tell the input size
    notes += audio.notes
    text_cfg = detect_text_config(kept, text_config, notes)
    text_proj = _need(kept, "text_projection.0.weight", "text projection")
    if int(text_proj.shape[1]) != text_cfg["hidden_size"]:
        raise ModelError("text_projection input width does not match the text tower width")
    projection_dim = audio.config["projection_dim"]
    if int(text_proj.shape[0]) != projection_dim:
        raise ModelError("audio and text projections have different widths")
    frontend = laion_frontend(audio.fusion, n_mels=audio.config["num_mel_bins"])
    check_stored_frontend(raw, frontend, audio.fusion, notes)

    non_float = sorted({str(v.dtype) for v in kept.values() if v.is_floating_point() and v.dtype != torch.float32})
    if non_float:
        notes.append(f"weights stored as {', '.join(non_float)}; converted to float32")
    config = ClapConfig(text_config=text_cfg, audio_config=audio.config, projection_dim=projection_dim)
    model = ClapModel(config)
    mapped = laion_to_hf(kept)
    own = model.state_dict()
    for name in HF_ONLY_BUFFERS:
        if name not in mapped and name in own:
            mapped[name] = own[name].clone()
    load_state_dict_checked(model, mapped, str(path))
    model.float().eval()
    return ConvertedModel(
        model=model,
        frontend=frontend,
        audio_architecture=audio.architecture,
        text_architecture="roberta",
        tokenizer_dir=tok,
        max_text_length=LAION_MAX_TEXT_LENGTH,
        source=str(path),
        source_format="laion_clap_pt",
        source_sha256=sha256_file(path),
        notes=notes,
    )
