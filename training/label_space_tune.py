"""``clap-train label-space``: choose the label-space settings, and table the alternatives.

    clap-train label-space --checkpoint runs/v2/checkpoints/best.pt --manifest data/corpus/manifest.jsonl \\
        --split val --temperatures 0.01,0.02,0.05 --templates "This is a sound of {}.|{}" \\
        --weights 1,0.7,0.5,0 --out runs/v2/label_space_val.json [--apply runs/v2/tuned.pt]

Why a tool of its own: the prior has no trained parameters, only a temperature and an anchor
prompt, and the mix with a trained branch is one weight. All of them act AFTER the towers, so the
towers run once per clip and caption (cached), and every combination is scored from the cache in
seconds with the evaluation code itself (``training.evaluate``: retrieval R@k, mAP@10, zero-shot
top-1 with ``This is a sound of {label}.``). Pick on the validation split only; report held-out.
``--apply`` writes the checkpoint with the best validation setting, ready for ``clap-train export``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from training.evaluate import DEFAULT_TEMPLATE, evaluate_retrieval, evaluate_zero_shot


class _MixEmbedder:
    """The ``training.evaluate`` Embedder protocol over cached tower outputs and the current heads."""

    def __init__(self, model, audio_cache: dict[str, np.ndarray], text_cache):
        self.model, self.audio_cache, self.text_cache = model, audio_cache, text_cache
        self.identity = {"kind": "label-space mix"}
        self.failures: dict[str, str] = {}

    def embed_audio(self, paths) -> np.ndarray:
        pooled = torch.from_numpy(np.stack([self.audio_cache[p] for p in paths]))
        with torch.inference_mode():
            return torch.nn.functional.normalize(self.model.audio_projection(pooled), dim=-1).numpy()

    def embed_texts(self, texts) -> np.ndarray:
        raw = torch.from_numpy(self.text_cache(list(texts)))
        with torch.inference_mode():
            return torch.nn.functional.normalize(self.model.text_projection(raw), dim=-1).numpy()


def pooled_audio(model, paths: list[str]) -> dict[str, np.ndarray]:
    """Mean patch outputs of each file (the serving front end, the torch tower), in float64 sums."""
    from indexer.audio.patches import frames_to_patches
    from indexer.audio.views import file_views

    spec = model.config.audio_frontend()
    out = {}
    with torch.inference_mode():
        for path in dict.fromkeys(paths):
            views, _ = file_views(path, spec)
            patches = np.ascontiguousarray(frames_to_patches(views.features[0], spec))
            rows = torch.cat([model.audio.patch_outputs(torch.from_numpy(patches[i : i + 256]))
                              for i in range(0, len(patches), 256)]).numpy()
            out[path] = (np.add.reduce(rows, axis=0, dtype=np.float64) / len(rows)).astype(np.float32)
    return out


class TextCache:
    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.seen = model, tokenizer, {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.seen]
        with torch.inference_mode():
            for i in range(0, len(todo), 128):
                ids, mask = self.tokenizer.encode_batch(todo[i : i + 128])
                rows = self.model.text(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
                self.seen.update(zip(todo[i : i + 128], rows))
        return np.stack([self.seen[t] for t in texts])


def set_mix(model, *, prior_weight: float | None = None, temperature: float | None = None,
            template: str | None = None, tokenizer=None) -> None:
    """Change the label-space settings of a model in place (config and heads agree)."""
    from training.models.clap import refresh_anchors

    head = model.config.head
    update = {k: v for k, v in (("prior_weight", prior_weight), ("temperature", temperature),
                                ("template", template)) if v is not None}
    model.config = model.config.model_copy(update={"head": head.model_copy(update=update)})
    if prior_weight is not None:
        model.audio_projection.prior_weight = model.text_projection.prior_weight = prior_weight
    if temperature is not None:
        model.text_projection.temperature = temperature
    if template is not None and template != head.template:
        refresh_anchors(model, tokenizer)


def sweep(model, tokenizer, records, temperatures, templates, weights) -> list[dict]:
    """Retrieval and zero-shot for every (template, temperature, weight) over ``records``."""
    embedder = _MixEmbedder(model, pooled_audio(model, [str(r.audio) for r in records]), TextCache(model, tokenizer))
    rows = []
    for template, temperature, weight in itertools.product(templates, temperatures, weights):
        set_mix(model, prior_weight=weight, temperature=temperature, template=template, tokenizer=tokenizer)
        row = {"template": template, "temperature": temperature, "prior_weight": weight}
        if any(r.captions for r in records):
            row.update({f"t2a_{k}": v for k, v in evaluate_retrieval(embedder, records).metrics.items()
                        if k.startswith("text_to_audio") or k in ("mAP@10",)})
        if any(r.labels for r in records):
            single = [r for r in records if len(r.labels) == 1]
            row["zeroshot_top1"] = evaluate_zero_shot(embedder, single, None, DEFAULT_TEMPLATE).metrics["top1"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    from indexer.text import TextTokenizer
    from training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
    from training.data.readers import read_any

    p = argparse.ArgumentParser(prog="clap-train label-space", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--temperatures", default="0.02")
    p.add_argument("--templates", default="This is a sound of {}.", help="'|'-separated, {} = the label")
    p.add_argument("--weights", default="1", help="prior weights to try (1 = prior alone, 0 = branch alone)")
    p.add_argument("--out", type=Path)
    p.add_argument("--apply", type=Path, help="write the checkpoint with the best setting here")
    args = p.parse_args(argv)
    payload = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(payload).eval()
    if model.config.head is None:
        print("error: not a label-space model", file=sys.stderr)
        return 2
    tokenizer_file = args.checkpoint.parent / "tokenizer.json"
    tokenizer_file.write_text(payload["tokenizer_json"]) if not tokenizer_file.exists() else None
    tokenizer = TextTokenizer(tokenizer_file, max_length=model.config.text.max_length)
    loaded = read_any(args.manifest)
    records = loaded[0] if isinstance(loaded, tuple) else loaded
    records = [r for r in records if r.split == args.split]
    rows = sweep(model, tokenizer, records, [float(t) for t in args.temperatures.split(",")],
                 args.templates.split("|"), [float(w) for w in args.weights.split(",")])
    score = lambda r: r.get("t2a_text_to_audio_R@10", 0) + r.get("zeroshot_top1", 0)  # noqa: E731
    best = max(rows, key=score)
    for r in rows:
        print(json.dumps(r) + ("   <- best" if r is best else ""))
    if args.out:
        args.out.write_text(json.dumps({"split": args.split, "rows": rows, "best": best}, indent=2) + "\n")
    if args.apply:
        set_mix(model, prior_weight=best["prior_weight"], temperature=best["temperature"],
                template=best["template"], tokenizer=tokenizer)
        save_checkpoint(args.apply, model=model, model_config_json=model.config.model_dump_json(),
                        tokenizer_json=payload["tokenizer_json"], state=payload["state"],
                        train_config_json=payload.get("train_config", "{}"))
        print(f"wrote {args.apply}")
    return 0
