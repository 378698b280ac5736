"""The trainable CLAP model: an audio tower and a text tower projected into one space.

    model = create_model("cnn10-minilm")             # training.models.factory, the door to this class
    a = model.encode_audio(features, is_longer)     # (B, D) unit vectors
    t = model.encode_text(input_ids, attention_mask)
    loss = contrastive_loss(a, t, model.logit_scales())   # training.loss

Towers: :class:`~training.models.audio_htsat.HtsatTower` or
:class:`~training.models.audio_cnn.CnnTower`, and :class:`~training.models.text.TextTower`. Each
tower's pooled output goes through a projection MLP (Linear -> ReLU -> Linear, the LAION/HF
layout, so public checkpoints' heads load as they are) and is L2-normalised. Two learnable
temperatures, stored as logs like CLIP: ``logit_scale_a`` scales audio->text logits,
``logit_scale_t`` text->audio logits (the public checkpoints carry both).

The same ``encode_*`` methods are what gets exported to ONNX (``training.export``), so the graph
the runtime serves is the graph that was trained.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.models.audio_cnn import CnnTower
from training.models.audio_htsat import HtsatTower
from training.models.config import ModelConfig, TextConfig, load_config
from training.models.text import TextTower

MAX_LOGIT_SCALE = 100.0  # CLIP clamps the learned temperature so training cannot blow up


class ProjectionHead(nn.Module):
    def __init__(self, width: int, dim: int):
        super().__init__()
        self.linear1 = nn.Linear(width, dim)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))


class ClapTrainModel(nn.Module):
    def __init__(self, config: ModelConfig, audio: nn.Module, text: TextTower):
        super().__init__()
        self.config = config
        self.audio = audio
        self.text = text
        self.audio_projection = ProjectionHead(audio.width, config.embed_dim)
        self.text_projection = ProjectionHead(text.width, config.embed_dim)
        init = math.log(config.logit_scale_init)
        self.logit_scale_a = nn.Parameter(torch.tensor(init))
        self.logit_scale_t = nn.Parameter(torch.tensor(init))
        self.tokenizer_dir: Path | None = None  # the tokenizer that came with pretrained weights

    def encode_audio(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_projection(self.audio(input_features, is_longer)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(self.text(input_ids, attention_mask)), dim=-1)

    def text_outputs(self, tokenizer, texts: list[str], batch: int = 256) -> torch.Tensor:
        """Pooled text-tower outputs (before the head) of ``texts``, in eval mode, on the CPU:
        what the cached mode stores and the label-space anchors are made of."""
        device, was_training = self.logit_scale_a.device, self.text.training
        self.text.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch):
                ids, mask = tokenizer.encode_batch(texts[start : start + batch])
                out.append(self.text(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)).float().cpu())
        self.text.train(was_training)
        return torch.cat(out)

    def logit_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio->text, text->audio) multipliers, exp of the learned logs, clamped."""
        return (
            self.logit_scale_a.exp().clamp(max=MAX_LOGIT_SCALE),
            self.logit_scale_t.exp().clamp(max=MAX_LOGIT_SCALE),
        )

    def forward(self, input_features, is_longer, input_ids, attention_mask):
        return self.encode_audio(input_features, is_longer), self.encode_text(input_ids, attention_mask)

    def full_config(self) -> ModelConfig:
        """The config with the text tower's actual transformers settings, enough to rebuild it."""
        text = self.config.text.model_copy(
            update={"type": self.text.family, "config": self.text.config_dict(), "pooling": self.text.pooling}
        )
        return self.config.model_copy(update={"text": text})

    def replace_text_tower(self, tower: TextTower) -> None:
        """Swap in a pretrained text tower; a new width needs a new (freshly initialised) head."""
        self.text = tower
        if hasattr(self.text_projection, "linear1") and self.text_projection.linear1.in_features != tower.width:
            self.text_projection = ProjectionHead(tower.width, self.config.embed_dim)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part, for per-tower learning rates and freezing."""
        return {
            "audio": list(self.audio.parameters()),
            "text": list(self.text.parameters()),
            "heads": [
                *self.audio_projection.parameters(),
                *self.text_projection.parameters(),
                self.logit_scale_a,
                self.logit_scale_t,
            ],
        }

    def configure_optimizers(
        self, weight_decay: float, rates: dict[str, float], frozen: Collection[str] = ()
    ) -> torch.optim.AdamW:
        """AdamW with one group per (part, decay / no decay) of :meth:`parameter_groups`; each group
        carries its part's rate as ``base_lr`` for the schedule (``training.loss.lr_at``).

        Weights of linear and conv layers decay; biases, norms and temperatures do not (decaying a
        temperature drags it towards 1). A part in ``frozen`` stops taking gradients and gets no
        group at all, so AdamW keeps no state for it (LiT)."""
        groups = []
        for part, params in self.parameter_groups().items():
            for p in params:
                p.requires_grad_(part not in frozen)
            if part in frozen:
                continue
            groups += [
                {
                    "params": [p for p in params if p.ndim >= 2],
                    "weight_decay": weight_decay,
                    "base_lr": rates[part],
                    "lr": rates[part],
                    "name": part,
                },
                {
                    "params": [p for p in params if p.ndim < 2],
                    "weight_decay": 0.0,
                    "base_lr": rates[part],
                    "lr": rates[part],
                    "name": part + "/no_decay",
                },
            ]
        return torch.optim.AdamW([g for g in groups if g["params"]], betas=(0.9, 0.98), eps=1e-6)


def build_model(config: ModelConfig | str | dict, seed: int | None = 0) -> ClapTrainModel:
    """A freshly initialised model for a registry name, JSON path, dict or parsed config."""
    config = config if isinstance(config, ModelConfig) else load_config(config)
    if seed is not None:
        torch.manual_seed(seed)
    if config.audio.type == "htsat":
        audio = HtsatTower.from_config(config.audio.config, config.fusion)
    elif config.audio.type == "yamnet":
        from training.models.audio_yamnet import YamnetTower

        audio = YamnetTower()
    else:
        audio = CnnTower(config.audio_frontend().n_mels, config.audio.model_dump(), config.fusion)
    text = TextTower.from_config(config.text.type, config.text.config, config.text.resolved_pooling)
    model = ClapTrainModel(config, audio, text)
    if config.head is not None:
        _install_label_space(model)
    return model


def _install_label_space(model: ClapTrainModel) -> None:
    """Swap the MLP heads for label-space heads (anchors start at zero: call :func:`refresh_anchors`
    once the text tower and its tokenizer are final)."""
    from indexer.errors import ModelError
    from training.models.label_space import LabelSpaceAudioHead, LabelSpaceTextHead, embed_dim

    head = model.config.head
    assert head is not None
    classes = len(head.labels())
    if getattr(model.audio, "num_classes", None) != classes:
        raise ModelError(f"label_space heads need an audio tower with {classes} class scores")
    want = embed_dim(classes, head.prior_weight, head.branch_dim, head.embedding_dim)
    if model.config.embed_dim != want:
        raise ModelError(
            f"embed_dim must be {want} for {classes} labels + branch {head.branch_dim} "
            f"+ embedding block {head.embedding_dim}"
        )
    model.audio_projection = LabelSpaceAudioHead(
        model.audio.width, classes, head.prior_weight, head.branch_dim, head.embedding_dim, head.embedding_weight
    )
    model.text_projection = LabelSpaceTextHead(
        torch.zeros(classes, model.text.width), head.temperature, head.prior_weight, head.branch_dim, head.embedding_dim
    )


def refresh_anchors(model: ClapTrainModel, tokenizer) -> None:
    """Label-space models: embed every label's prompt with the current text tower (no-op otherwise).

    ``tokenizer``: an ``indexer.text.TextTokenizer`` for that tower.
    """
    head = model.config.head
    if head is None:
        return
    prompts = [head.template.format(label) for label in head.labels()]
    anchors = model.text_outputs(tokenizer, prompts, batch=128).to(model.text_projection.anchors.device)
    model.text_projection.anchors.copy_(F.normalize(anchors, dim=-1))


def _as_roberta(clap_text: nn.Module) -> nn.Module:
    """``ClapTextModel`` is RoBERTa under another name; rebuild it as a ``RobertaModel`` with the
    same weights, so a checkpoint made from a converted model rebuilds from its config alone."""
    from transformers import RobertaConfig, RobertaModel

    from indexer.errors import ModelError

    drop = {"model_type", "architectures", "transformers_version", "dtype", "torch_dtype"}
    config = RobertaConfig(**{k: v for k, v in clap_text.config.to_dict().items() if k not in drop})
    roberta = RobertaModel(config, add_pooling_layer=True)
    own = roberta.state_dict()
    state = {k: v for k, v in clap_text.state_dict().items() if k in own}
    if set(own) - set(state):
        raise ModelError(f"CLAP text model lacks RoBERTa tensors: {sorted(set(own) - set(state))[:5]}")
    roberta.load_state_dict(state)
    return roberta.train(clap_text.training)


def from_hf_clap(clap, max_text_length: int = 77) -> ClapTrainModel:
    """Wrap a transformers ``ClapModel`` (what the checkpoint converters produce): the audio tower,
    heads and temperatures are the ClapModel's own modules; the text tower becomes a
    ``RobertaModel`` holding the same weights."""
    audio_cfg = clap.config.audio_config
    keys = (
        "patch_embeds_hidden_size depths num_attention_heads window_size hidden_size spec_size patch_size "
        "patch_stride num_mel_bins mlp_ratio flatten_patch_embeds enable_patch_layer_norm projection_hidden_act"
    ).split()
    config = ModelConfig(
        description=f"converted transformers ClapModel ({'fused' if audio_cfg.enable_fusion else 'unfused'})",
        embed_dim=int(clap.config.projection_dim),
        audio={
            "type": "htsat",
            "fusion": bool(audio_cfg.enable_fusion),
            "config": {k: getattr(audio_cfg, k) for k in keys if hasattr(audio_cfg, k)},
        },
        text=TextConfig(type="roberta", pooling="pooler", max_length=max_text_length),
    )
    model = ClapTrainModel.__new__(ClapTrainModel)
    nn.Module.__init__(model)
    model.config = config
    model.audio = HtsatTower(clap.audio_model.audio_encoder)
    model.text = TextTower(_as_roberta(clap.text_model), "roberta", "pooler")
    model.audio_projection = clap.audio_projection
    model.text_projection = clap.text_projection
    model.logit_scale_a = clap.logit_scale_a
    model.logit_scale_t = clap.logit_scale_t
    model.tokenizer_dir = None
    return model
