"""Key layout of CLAP state dicts: laion_clap ``.pt`` names <-> transformers ``ClapModel`` names.

Pure functions on ``{name: tensor}`` dicts, kept apart from the loaders so that both directions can
be tested against each other: ``hf_to_laion(laion_to_hf(sd)) == sd`` for every weight tensor. The
inverse exists for the tests (a random ``ClapModel`` saved in laion layout must convert back
bit-exactly) and for anyone who wants to hand a fine-tuned model back to laion_clap.

Naming differences handled here (everything else is identical on both sides):

=========================================  ==================================================
laion_clap                                 transformers
=========================================  ==================================================
``text_branch.*``                          ``text_model.*`` (both are RoBERTa names)
``audio_branch.bn0``                       ``audio_model.audio_encoder.batch_norm``
``audio_branch.*``                         ``audio_model.audio_encoder.*``
``...blocks.J.norm1`` / ``norm2``          ``...blocks.J.layernorm_before`` / ``layernorm_after``
``...blocks.J.attn.qkv`` (fused, 3*d)      ``...attention.self.{query,key,value}`` (d each)
``...blocks.J.attn.proj``                  ``...attention.output.dense``
``...blocks.J.attn.relative_position_*``   ``...attention.self.relative_position_*``
``...blocks.J.mlp.fc1`` / ``fc2``          ``...intermediate.dense`` / ``output.dense``
``{audio,text}_projection.0`` / ``.2``     ``{audio,text}_projection.linear1`` / ``linear2``
=========================================  ==================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from indexer.errors import ModelError

if TYPE_CHECKING:
    from torch import Tensor

LAION_AUDIO = "audio_branch."
LAION_TEXT = "text_branch."
HF_AUDIO = "audio_model.audio_encoder."
HF_TEXT = "text_model."

# laion tensors that have no counterpart in ClapModel, and why they can go.
# (prefix or regex, reason) -- matched against keys after ``module.`` is stripped.
LAION_DROPPED: tuple[tuple[str, str], ...] = (
    (r"^text_branch\.embeddings\.position_ids$", "arange buffer; ClapModel builds its own"),
    (
        r"^audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$",
        "shifted-window mask; ClapModel recomputes it",
    ),
    (r"^audio_branch\.spectrogram_extractor\.", "STFT kernels; the front end computes the STFT"),
    (r"^audio_branch\.logmel_extractor\.", "mel filter bank; the front end holds it"),
    (r"^audio_branch\.head\.", "AudioSet classifier head; not part of the embedding"),
    (r"^audio_branch\.tscam_conv\.", "AudioSet token-semantic head; not part of the embedding"),
    (r"^audio_transform\.", "contrastive-loss MLP; not part of the embedding"),
    (r"^text_transform\.", "contrastive-loss MLP; not part of the embedding"),
)
_DROPPED_RE = [(re.compile(p), why) for p, why in LAION_DROPPED]

# Swin block sub-module renames (laion -> hf), applied after ``layers.I.blocks.J.``.
_BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("attn.relative_position_bias_table", "attention.self.relative_position_bias_table"),
    ("attn.relative_position_index", "attention.self.relative_position_index"),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)
_BLOCK_RE = re.compile(r"^(layers\.\d+\.blocks\.\d+\.)(.+)$")
_QKV = ("query", "key", "value")
# ClapModel buffers that laion checkpoints never carry (or carry under a name we drop).
HF_ONLY_BUFFERS = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")


def unwrap_laion(obj: object) -> dict[str, Tensor]:
    """Return the bare state dict of a loaded laion ``.pt``: strip ``{'state_dict': ...}``
    and the DDP ``module.`` prefix that the public checkpoints carry."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ModelError(f"not a laion_clap checkpoint: expected a state dict, got {type(obj).__name__}")
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ModelError(f"not a laion_clap checkpoint: non-string key {key!r}")
        name = key[len("module.") :] if key.startswith("module.") else key
        if name in out:
            raise ModelError(f"checkpoint has {name!r} both with and without the 'module.' prefix")
        out[name] = value
    return out


def split_dropped(sd: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Separate the tensors ClapModel has no use for. Returns ``(kept, {dropped_key: reason})``."""
    kept: dict[str, Tensor] = {}
    dropped: dict[str, str] = {}
    for key, value in sd.items():
        reason = next((why for rx, why in _DROPPED_RE if rx.search(key)), None)
        if reason is None:
            kept[key] = value
        else:
            dropped[key] = reason
    return kept, dropped


def _audio_laion_to_hf(rest: str, sd: Mapping[str, Tensor], out: dict[str, Tensor]) -> None:
    value = sd[LAION_AUDIO + rest]
    if rest.startswith("bn0."):
        out[HF_AUDIO + "batch_norm." + rest[len("bn0.") :]] = value
        return
    m = _BLOCK_RE.match(rest)
    if m is None:  # patch_embed.*, layers.I.downsample.*, norm.*: same names on both sides
        out[HF_AUDIO + rest] = value
        return
    block, tail = m.groups()
    if tail.startswith("attn.qkv."):
        param = tail[len("attn.qkv.") :]
        if value.shape[0] % 3:
            raise ModelError(f"{LAION_AUDIO}{rest}: fused qkv dim 0 ({value.shape[0]}) is not divisible by 3")
        for name, part in zip(_QKV, value.chunk(3, dim=0), strict=True):
            out[f"{HF_AUDIO}{block}attention.self.{name}.{param}"] = part.clone()
        return
    for old, new in _BLOCK_RENAMES:
        if tail.startswith(old):
            out[HF_AUDIO + block + new + tail[len(old) :]] = value
            return
    raise ModelError(f"unknown key in the laion audio tower: {LAION_AUDIO}{rest}")


def _rename(sd, text: tuple[str, str], audio: str, audio_fn, projection: tuple[str, dict], what: str, skip=()):
    """The walk both directions share: logit scales kept, the text tower renamed by prefix, the audio
    tower handed to ``audio_fn(rest, sd, out)``, the projection MLPs' layers renumbered."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key in skip:
            continue
        if key in ("logit_scale_a", "logit_scale_t"):
            out[key] = value
        elif key.startswith(text[0]):
            out[text[1] + key[len(text[0]) :]] = value
        elif key.startswith(audio):
            audio_fn(key[len(audio) :], sd, out)
        elif m := re.match(projection[0], key):
            tower, idx, param = m.groups()
            out[f"{tower}_projection.{projection[1][idx]}.{param}"] = value
        else:
            raise ModelError(f"unexpected key in {what}: {key!r}")
    return out


def laion_to_hf(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename (and split fused qkv of) a laion state dict whose unused keys were already removed
    (see :func:`split_dropped`). Raises ``ModelError`` on a key in no known namespace."""
    projection = (r"^(audio|text)_projection\.([02])\.(weight|bias)$", {"0": "linear1", "2": "linear2"})
    return _rename(sd, (LAION_TEXT, HF_TEXT), LAION_AUDIO, _audio_laion_to_hf, projection, "laion checkpoint")


def _audio_hf_to_laion(rest: str, sd: Mapping[str, Tensor], out: dict[str, Tensor]) -> None:
    if rest.startswith("batch_norm."):
        out[LAION_AUDIO + "bn0." + rest[len("batch_norm.") :]] = sd[HF_AUDIO + rest]
        return
    m = _BLOCK_RE.match(rest)
    if m is None:
        out[LAION_AUDIO + rest] = sd[HF_AUDIO + rest]
        return
    block, tail = m.groups()
    if qm := re.match(r"^attention\.self\.(query|key|value)\.(weight|bias)$", tail):
        if qm.group(1) != "query":  # emitted once, together with the query part
            return
        param = qm.group(2)
        parts = [sd[f"{HF_AUDIO}{block}attention.self.{n}.{param}"] for n in _QKV]
        import torch

        out[f"{LAION_AUDIO}{block}attn.qkv.{param}"] = torch.cat(parts, dim=0)
        return
    for old, new in _BLOCK_RENAMES:
        if tail.startswith(new):
            out[LAION_AUDIO + block + old + tail[len(new) :]] = sd[HF_AUDIO + rest]
            return
    raise ModelError(f"unknown key in the transformers audio tower: {HF_AUDIO}{rest}")


def hf_to_laion(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`laion_to_hf`. ClapModel-only buffers (``position_ids``, ``token_type_ids``)
    are left out; the dropped laion tensors (STFT, mel, heads, loss MLPs) are not invented."""
    projection = (r"^(audio|text)_projection\.linear([12])\.(weight|bias)$", {"1": "0", "2": "2"})
    text = (HF_TEXT, LAION_TEXT)
    return _rename(sd, text, HF_AUDIO, _audio_hf_to_laion, projection, "ClapModel state dict", HF_ONLY_BUFFERS)


def describe_key_problems(groups: dict[str, list[str]], shown: int = 8) -> list[str]:
    """One readable phrase per non-empty group, e.g. ``missing: a, b (+3 more)``."""
    phrases = []
    for label, items in groups.items():
        if items:
            more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
            phrases.append(f"{label}: {', '.join(items[:shown])}{more}")
    return phrases
