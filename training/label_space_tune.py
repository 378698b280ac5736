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
from pathlib import Path

import numpy as np
import torch

from indexer.errors import ConfigError, report_error
from training.evaluate import DEFAULT_TEMPLATE, evaluate_retrieval, evaluate_zero_shot
from training.model_card import LabelledRecord, primary_label, read_corpus


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
            rows = torch.cat(
                [
                    model.audio.patch_outputs(torch.from_numpy(patches[i : i + 256].copy()))
                    for i in range(0, len(patches), 256)
                ]
            ).numpy()
            out[path] = (np.add.reduce(rows, axis=0, dtype=np.float64) / len(rows)).astype(np.float32)
    return out


class TextCache:
    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.seen = model, tokenizer, {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if todo:
            self.seen.update(zip(todo, self.model.text_outputs(self.tokenizer, todo, batch=128).numpy()))
        return np.stack([self.seen[t] for t in texts])


def set_mix(
    model,
    *,
    prior_weight: float | None = None,
    temperature: float | None = None,
    template: str | None = None,
    tokenizer=None,
) -> None:
    """Change the label-space settings of a model in place (config and heads agree)."""
    from training.models.clap import refresh_anchors

    head = model.config.head
    update = {
        k: v
        for k, v in (("prior_weight", prior_weight), ("temperature", temperature), ("template", template))
        if v is not None
    }
    model.config = model.config.model_copy(update={"head": head.model_copy(update=update)})
    if prior_weight is not None:
        model.audio_projection.prior_weight = model.text_projection.prior_weight = prior_weight
    if temperature is not None:
        model.text_projection.temperature = temperature
    if template is not None and template != head.template:
        refresh_anchors(model, tokenizer)


def sweep(model, tokenizer, records, temperatures, templates, weights, audio_cache=None) -> list[dict]:
    """Retrieval and zero-shot for every (template, temperature, weight) over ``records``."""
    audio_cache = audio_cache or pooled_audio(model, [str(r.audio) for r in records])
    embedder = _MixEmbedder(model, audio_cache, TextCache(model, tokenizer))
    rows = []
    for template, temperature, weight in itertools.product(templates, temperatures, weights):
        set_mix(model, prior_weight=weight, temperature=temperature, template=template, tokenizer=tokenizer)
        row = {"template": template, "temperature": temperature, "prior_weight": weight}
        if any(r.captions for r in records):
            t2a = evaluate_retrieval(embedder, records).metrics["text_to_audio"]
            row.update({f"t2a_{k}": t2a[k] for k in ("R@1", "R@5", "R@10", "mAP@10")})
        labelled = [
            LabelledRecord(r.audio, tuple(r.captions), (primary_label(r),), r.split)
            for r in records
            if primary_label(r)
        ]
        if labelled:
            row["zeroshot_top1"] = evaluate_zero_shot(embedder, labelled, None, DEFAULT_TEMPLATE).metrics["top1"]
        rows.append(row)
    return rows


def same_label_top1(vectors: np.ndarray, labels: list[str]) -> float:
    """Query by example: share of clips whose nearest other clip has the same primary label."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    y = np.array(labels)
    return float((y[sims.argmax(axis=1)] == y).mean())


def embedding_sweep(
    model, train_pooled: np.ndarray, pooled: np.ndarray, labels: list[str], dim: int, weights: list[float]
) -> list[dict]:
    """Audio->audio same-label top-1 with an embedding block of ``dim`` axes at each share, plus
    the two reference spaces (class scores alone, the whole 1024-d embedding alone)."""
    head = model.audio_projection
    head.fit_embedding_block(torch.from_numpy(train_pooled[:, : -head.num_classes]), dim, 0.0)
    rows = [
        {
            "space": "class scores (prior block)",
            "same_label_top1": same_label_top1(pooled[:, -head.num_classes :], labels),
        },
        {
            "space": f"tower embedding ({pooled.shape[1] - head.num_classes}-d)",
            "same_label_top1": same_label_top1(pooled[:, : -head.num_classes], labels),
        },
    ]
    for weight in weights:
        head.embedding_weight = weight
        with torch.inference_mode():
            vectors = head(torch.from_numpy(pooled)).numpy()
        rows.append(
            {
                "space": "joint vector",
                "embedding_dim": dim,
                "embedding_weight": weight,
                "same_label_top1": same_label_top1(vectors, labels),
            }
        )
    return rows


def add_embedding_block(model, train_pooled: np.ndarray, dim: int, weight: float) -> None:
    """Fit the audio-only block on the training split and record it in the config."""
    head = model.config.head
    model.audio_projection.fit_embedding_block(
        torch.from_numpy(train_pooled[:, : -model.audio_projection.num_classes]), dim, weight
    )
    model.text_projection.embedding_dim = dim
    extra = dim - head.embedding_dim
    model.config = model.config.model_copy(
        update={
            "embed_dim": model.config.embed_dim + extra,
            "head": head.model_copy(update={"embedding_dim": dim, "embedding_weight": weight}),
        }
    )


def _fit_logistic(feats: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: np.ndarray | None = None) -> np.ndarray:
    """Weighted logistic regression by Newton's method on (standardised) features, halving any
    step that does not lower the loss; ``ridge`` pins coefficients whose feature is zeroed."""
    k = feats.shape[1]
    ridge = np.zeros((k, k)) if ridge is None else ridge

    def loss(theta):
        t = feats @ theta
        return float(np.sum(w * (np.logaddexp(0, t) - y * t)))

    theta = np.zeros(k)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(feats @ theta)))
        g = feats.T @ (w * (p - y))
        h = (feats * (w * p * (1 - p))[:, None]).T @ feats + ridge
        step, now = np.linalg.solve(h + 1e-12 * np.eye(k), g), loss(theta)
        while loss(theta - step) > now and np.abs(step).max() > 1e-12:
            step = step / 2
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return theta


def fit_calibration(model, records, audio_cache: dict[str, np.ndarray], text_cache, where: str) -> dict:
    """Logistic map cosine -> P(match), fitted on every (caption, clip) pair of ``records`` with the
    matching and non-matching pairs weighted equally (Newton's method on two parameters)."""
    embedder = _MixEmbedder(model, audio_cache, text_cache)
    paths = list(dict.fromkeys(str(r.audio) for r in records))
    audio = embedder.embed_audio(paths)
    captions, owner = [], []
    for r in records:
        for c in r.captions:
            captions.append(c)
            owner.append(paths.index(str(r.audio)))
    texts = embedder.embed_texts(captions)
    sims = texts @ audio.T  # (captions, clips)
    positive = np.zeros_like(sims, dtype=bool)
    positive[np.arange(len(captions)), owner] = True
    classes = model.audio_projection.num_classes
    block = texts[:, :classes]
    peaks = block.max(axis=1) / np.maximum(np.linalg.norm(block, axis=1), 1e-12)  # ScoreCalibration.query_peak
    x, y = sims.ravel().astype(np.float64), positive.ravel().astype(np.float64)
    peak = np.repeat(peaks, sims.shape[1]).astype(np.float64)
    w = np.where(y > 0, 0.5 / y.sum(), 0.5 / (1 - y).sum())
    mean, std = np.array([x.mean(), peak.mean()]), np.array([x.std() or 1.0, peak.std() or 1.0])
    feats = np.column_stack([(x - mean[0]) / std[0], (peak - mean[1]) / std[1], np.ones_like(x)])
    theta = _fit_logistic(feats, y, w)
    if theta[1] < 0:
        # A clearer query must never LOWER relevance. On path-derived captions a focused query
        # ("a bird") also matches many non-positive clips of its class, which can pull the fitted
        # peak weight below zero; then the peak term is dropped and the cosine alone is fitted.
        feats[:, 1] = 0.0
        theta = _fit_logistic(feats, y, w, ridge=np.diag([0.0, 1.0, 0.0]))
    a, c = theta[0] / std[0], theta[1] / std[1]
    b = theta[2] - a * mean[0] - c * mean[1]
    pos, neg = x[y > 0], x[y == 0]
    auc = float((pos[:, None] > neg[None, :]).mean()) if len(pos) * len(neg) < 5e7 else None
    return {
        "slope": float(a),
        "intercept": float(b),
        "peak_slope": float(c),
        "prior_dims": int(classes),
        "auc": auc,
        "fitted_on": f"{where}: {len(captions)} captions x {len(paths)} clips, positives and negatives "
        "weighted equally",
    }


def render_alternatives(val: dict, heldout: dict) -> str:
    """Markdown: every mix scored on validation (where it was chosen) and held-out (reported)."""

    def key(r):
        return (r["template"], r["temperature"], r["prior_weight"])

    held = {key(r): r for r in heldout["rows"]}
    best = key(val["best"])
    pct = lambda x: "" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    lines = [
        "## Alternatives",
        "",
        "Chosen on the validation split (widelands-data, animalia) only; the held-out columns are reported, "
        "never used to choose. Prior weight 1 = the label-space prior alone (no training), 0 = the trained "
        "branch alone.",
        "",
        "| prompt | temperature | prior weight | val zero-shot | val t2a R@10 | held-out zero-shot | "
        "held-out t2a R@1 | held-out t2a R@10 | held-out mAP@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(val["rows"], key=lambda r: (r["template"], r["temperature"], -r["prior_weight"])):
        h = held.get(key(r), {})
        mark = " **(shipped)**" if key(r) == best else ""
        lines.append(
            f"| `{r['template']}` | {r['temperature']:g} | {r['prior_weight']:g}{mark} | "
            f"{pct(r.get('zeroshot_top1'))} | {pct(r.get('t2a_R@10'))} | {pct(h.get('zeroshot_top1'))} | "
            f"{pct(h.get('t2a_R@1'))} | {pct(h.get('t2a_R@10'))} | "
            f"{h.get('t2a_mAP@10', float('nan')):.3f} |"
        )
    if val.get("audio_rows"):
        held_audio = {(r["space"], r.get("embedding_weight")): r for r in heldout.get("audio_rows", [])}
        lines += [
            "",
            "Query by example: same-label nearest neighbour (top-1) in each space.",
            "",
            "| space | embedding share | validation | held-out |",
            "|---|---|---|---|",
        ]
        for r in val["audio_rows"]:
            h = held_audio.get((r["space"], r.get("embedding_weight")), {})
            chosen = (
                val.get("best_audio")
                and r.get("embedding_weight") == val["best_audio"]["embedding_weight"]
                and r["space"] == "joint vector"
            )
            lines.append(
                f"| {r['space']} | {r.get('embedding_weight', '')}{' **(shipped)**' if chosen else ''} | "
                f"{pct(r['same_label_top1'])} | {pct(h.get('same_label_top1'))} |"
            )
    return "\n".join(lines) + "\n"


def apply_best(
    args, payload: dict, model, tokenizer, best: dict, best_audio, train_pooled, records, audio_cache
) -> None:
    """``--apply``: the best mix (and embedding block) set in the model, its score calibration fitted,
    the checkpoint written."""
    from training.checkpoint import save_checkpoint

    set_mix(
        model,
        prior_weight=best["prior_weight"],
        temperature=best["temperature"],
        template=best["template"],
        tokenizer=tokenizer,
    )
    if best_audio is not None and train_pooled is not None:
        add_embedding_block(model, train_pooled, args.embedding_dims, best_audio["embedding_weight"])
    calibration = fit_calibration(
        model, records, audio_cache, TextCache(model, tokenizer), f"{args.manifest.name} split {args.split!r}"
    )
    print("calibration", json.dumps(calibration))
    model.config = model.config.model_copy(
        update={"head": model.config.head.model_copy(update={"calibration": calibration})}
    )
    save_checkpoint(
        args.apply,
        model=model,
        model_config_json=model.config.model_dump_json(),
        tokenizer_json=payload["tokenizer_json"],
        state=payload["state"],
        train_config_json=payload.get("train_config", "{}"),
    )
    print(f"wrote {args.apply}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clap-train label-space", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--manifest", type=Path)
    p.add_argument("--split", default="val")
    p.add_argument("--temperatures", default="0.02")
    p.add_argument("--templates", default="This is a sound of {}.", help="'|'-separated, {} = the label")
    p.add_argument("--weights", default="1", help="prior weights to try (1 = prior alone, 0 = branch alone)")
    p.add_argument(
        "--embedding-dims",
        type=int,
        default=0,
        help="add the audio-only embedding block with this many principal axes (fitted on --fit-split)",
    )
    p.add_argument("--embedding-weights", default="0,0.3,0.5,0.7", help="its audio->audio shares to try")
    p.add_argument("--fit-split", default="train")
    p.add_argument("--out", type=Path)
    p.add_argument("--apply", type=Path, help="write the checkpoint with the best setting here")
    p.add_argument(
        "--render",
        type=Path,
        nargs=2,
        metavar=("VAL_JSON", "HELDOUT_JSON"),
        help="only print the alternatives table of two earlier --out files",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from indexer.text import TextTokenizer
    from training.checkpoint import load_checkpoint
    from training.models.factory import create_model

    args = build_parser().parse_args(argv)
    if args.render:
        print(render_alternatives(*(json.loads(path.read_text()) for path in args.render)))
        return 0
    payload = load_checkpoint(args.checkpoint)
    model = create_model(pretrained=payload).eval()
    if model.config.head is None:
        return report_error(ConfigError(f"{args.checkpoint}: not a label-space model"))
    tokenizer_file = args.checkpoint.parent / "tokenizer.json"
    tokenizer_file.write_text(payload["tokenizer_json"]) if not tokenizer_file.exists() else None
    tokenizer = TextTokenizer(tokenizer_file, max_length=model.config.text.max_length)
    every = read_corpus(args.manifest)
    records = [r for r in every if r.split == args.split]
    audio_cache = pooled_audio(model, [str(r.audio) for r in records])  # the towers run once per clip
    rows = sweep(
        model,
        tokenizer,
        records,
        [float(t) for t in args.temperatures.split(",")],
        args.templates.split("|"),
        [float(w) for w in args.weights.split(",")],
        audio_cache,
    )
    audio_rows, train_pooled = [], None
    if args.embedding_dims:
        labelled = [r for r in records if primary_label(r)]
        cache = audio_cache
        fit = pooled_audio(model, [str(r.audio) for r in every if r.split == args.fit_split])
        train_pooled = np.stack(list(fit.values()))
        audio_rows = embedding_sweep(
            model,
            train_pooled,
            np.stack([cache[str(r.audio)] for r in labelled]),
            [primary_label(r) for r in labelled],
            args.embedding_dims,
            [float(w) for w in args.embedding_weights.split(",")],
        )
        for r in audio_rows:
            print(json.dumps(r))
    # The two things users do: find sounds by text (R@10) and tag them (zero-shot top-1), equally.
    score = lambda r: r.get("t2a_R@10", 0) + r.get("zeroshot_top1", 0)  # noqa: E731
    best = max(rows, key=score)
    for r in rows:
        print(json.dumps(r) + ("   <- best" if r is best else ""))
    joint = [r for r in audio_rows if r["space"] == "joint vector"]
    best_audio = max(joint, key=lambda r: (r["same_label_top1"], -r["embedding_weight"])) if joint else None
    if args.out:
        args.out.write_text(
            json.dumps(
                {"split": args.split, "rows": rows, "best": best, "audio_rows": audio_rows, "best_audio": best_audio},
                indent=2,
            )
            + "\n"
        )
    if args.apply:
        apply_best(args, payload, model, tokenizer, best, best_audio, train_pooled, records, audio_cache)
    return 0
