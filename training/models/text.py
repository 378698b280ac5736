"""Text towers: transformers' RoBERTa, BERT-family (incl. small sentence encoders such as
MiniLM) and the CLIP text transformer, with the pooling each family was trained with.

Input ``input_ids`` / ``attention_mask`` ``(B, L)`` int64; output pooled ``(B, hidden_size)``.
BERT's ``token_type_ids`` are all zeros for one sentence, which transformers fills in itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from indexer.errors import ModelError

FAMILIES = {"roberta": "RobertaModel", "bert": "BertModel", "clip": "CLIPTextModel"}
CONFIGS = {"roberta": "RobertaConfig", "bert": "BertConfig", "clip": "CLIPTextConfig"}
# transformers model_type -> our family name, for towers loaded from a folder
MODEL_TYPES = {
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "bert": "bert",
    "clip_text_model": "clip",
    "clip": "clip",
    "clap_text_model": "roberta",
}


def _transformers_class(name: str):
    import transformers

    return getattr(transformers, name)


class TextTower(nn.Module):
    def __init__(self, model: nn.Module, family: str, pooling: str):
        super().__init__()
        if pooling == "pooler" and getattr(model, "pooler", None) is None:
            raise ModelError(f"{family} text model has no pooler layer; use pooling 'mean', 'cls' or 'last'")
        self.model = model
        self.family = family
        self.pooling = pooling
        self.width = int(model.config.hidden_size)

    @classmethod
    def from_config(cls, family: str, settings: dict, pooling: str) -> TextTower:
        config = _transformers_class(CONFIGS[family])(**settings)
        model_cls = _transformers_class(FAMILIES[family])
        model = model_cls(config, add_pooling_layer=pooling == "pooler") if family != "clip" else model_cls(config)
        return cls(model, family, pooling)

    @classmethod
    def from_pretrained(cls, folder: str | Path, pooling: str | None = None) -> TextTower:
        """An HF-format text model folder (config.json + weights), e.g. an unzipped MiniLM."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        family = MODEL_TYPES.get(config.model_type)
        if family is None:
            raise ModelError(
                f"{folder}: text model type {config.model_type!r} is not supported "
                f"(supported: {', '.join(sorted(MODEL_TYPES))})"
            )
        if config.model_type == "clip":
            config = config.text_config
        pooling = pooling or {"roberta": "pooler", "bert": "mean", "clip": "last"}[family]
        model_cls = _transformers_class(FAMILIES[family])
        kwargs = {"add_pooling_layer": pooling == "pooler"} if family != "clip" else {}
        model = model_cls.from_pretrained(str(folder), config=config, local_files_only=True, **kwargs)
        return cls(model, family, pooling)

    def config_dict(self) -> dict:
        """The transformers config fields that rebuild this tower (for checkpoints and manifests)."""
        drop = {"transformers_version", "architectures", "model_type", "dtype", "torch_dtype"}
        return {k: v for k, v in self.model.config.to_diff_dict().items() if k not in drop and not k.startswith("_")}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        if self.pooling == "pooler":
            return out.pooler_output
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        if self.pooling == "mean":
            return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        last = (attention_mask.sum(dim=1) - 1).clamp(min=0)  # the EOS token closes every CLIP text
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
