"""Held-out evaluation and the model card of a trained model folder.

    clap-train model-card models/clapsearch-sfx-v1 --corpus data/corpus --run runs/default \\
        --split heldout --template "This is a sound of {label}."

Evaluates the exported ONNX folder (what users run) on the corpus' held-out split: text->audio
and audio->text retrieval on the clips' captions, zero-shot accuracy over the held-out clips'
primary AudioSet labels with the given prompt, per-class accuracy; lists the classes that had no
training data; and writes ``MODEL_CARD.md`` + ``heldout_report.json`` into the folder, with the
data sources and licences (``LICENCES.md`` copied alongside), the training command and config,
and the compute used.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Everyday sounds people search for; the card says which of them the training data never covered.
EVERYDAY = [
    "Dog",
    "Cat",
    "Bird",
    "Rain",
    "Thunder",
    "Wind",
    "Fire",
    "Water",
    "Walk, footsteps",
    "Door",
    "Car",
    "Engine",
    "Aircraft",
    "Helicopter",
    "Train",
    "Siren",
    "Bell",
    "Clock",
    "Glass",
    "Applause",
    "Laughter",
    "Speech",
    "Music",
    "Crying, sobbing",
    "Cough",
    "Sneeze",
    "Snoring",
    "Breathing",
    "Typing",
    "Vacuum cleaner",
    "Chainsaw",
    "Hammer",
    "Telephone",
    "Alarm",
    "Drum",
    "Guitar",
    "Piano",
    "Insect",
    "Frog",
    "Cattle, bovinae",
    "Horse",
    "Sheep",
    "Chicken, rooster",
]


@dataclass
class LabelledRecord:
    audio: str
    captions: tuple[str, ...]
    labels: tuple[str, ...]
    split: str | None = None


def primary_label(record) -> str | None:
    meta = getattr(record, "meta", None) or {}
    return meta.get("primary_label") or (record.labels[0] if record.labels else None)


def read_corpus(manifest: Path) -> list:
    """Every record of a corpus manifest, with its ``meta`` (where the primary labels live)."""
    from training.data.readers import read_any

    return read_any(manifest, extra="meta")[0]


def heldout_evaluation(model_dir: Path, records, template: str) -> dict:
    from training.evaluate import CachedEmbedder, OnnxEmbedder, evaluate_retrieval, evaluate_zero_shot

    embedder = CachedEmbedder(OnnxEmbedder(model_dir))
    retrieval = evaluate_retrieval(embedder, records)
    labelled = [
        LabelledRecord(r.audio, tuple(r.captions), (primary_label(r),), r.split) for r in records if primary_label(r)
    ]
    zero_shot = evaluate_zero_shot(embedder, labelled, None, template)
    return {
        "retrieval": retrieval.metrics,
        "zero_shot": zero_shot.metrics,
        "template": template,
        "clips": len(records),
        "zero_shot_clips": len(labelled),
        "identity": embedder.identity,
    }


def coverage(records, split: str) -> Counter:
    return Counter(label for r in records if r.split == split for label in r.labels)


def _fmt_pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def render_card(
    model_dir: Path,
    manifest,
    report: dict,
    corpus_report: dict,
    train_config: dict,
    train_counts: Counter,
    heldout_counts: Counter,
    compute: dict,
) -> str:
    missing = [c for c in EVERYDAY if train_counts.get(c, 0) == 0]
    unseen = sorted(c for c in heldout_counts if train_counts.get(c, 0) == 0)
    splits = corpus_report.get("splits", {})
    lines = [
        f"# {manifest.name}",
        "",
        "A clapsearch model: type a description, find the sounds; give a clip, find its neighbours.",
        "Built here, on CPU, from data any Debian machine can install; no model hub was used.",
        "",
        "## Model",
        "",
        *model_section(manifest),
        "",
        "## Held-out results",
        "",
        *results_section(report, train_counts, heldout_counts),
        "## Known gaps",
        "",
        f"- Everyday classes with no training clips at all: {', '.join(missing) or 'none'}. Expect weak results there.",
        f"- Held-out classes never seen in training: {', '.join(unseen) or 'none'}.",
        "- Music, speech and voice lines were filtered out of the corpus on purpose: this is a sound-effects model.",
        "- Small data (a few thousand clips): the towers stay locked; captions are built from file paths and "
        "curated descriptions, so fine-grained wording (materials, intensities) is only partly learnt.",
        "",
        "## Data",
        "",
        "| split | clips | hours |",
        "|---|---|---|",
        *(f"| {name} | {v.get('clips', 0)} | {v.get('hours', 0):.2f} |" for name, v in splits.items()),
        "",
        "Sources and licences per package and per clip: `LICENCES.md` in this folder (copied from the corpus) "
        "and the corpus `manifest.jsonl` (`licence` field). The extra-sfx recordings carry the attributions their "
        "authors ask for, listed there.",
        "",
        "## Reproduce",
        "",
        "```bash",
        "bash scripts/build_default_model.sh      # fetch weights, build corpus, train, export, evaluate",
        "```",
        "",
        "Training config:",
        "",
        "```json",
        json.dumps(train_config, indent=2),
        "```",
        "",
        "## Compute",
        "",
        *(f"- {k}: {v}" for k, v in compute.items()),
        "",
    ]
    return "\n".join(lines)


def results_section(report: dict, train_counts: Counter, heldout_counts: Counter) -> list[str]:
    """The held-out retrieval table and the zero-shot accuracy per class."""
    t2a, a2t = report["retrieval"]["text_to_audio"], report["retrieval"]["audio_to_text"]
    zs = report["zero_shot"]
    per_class = sorted(zs.get("per_class", {}).items(), key=lambda kv: (-heldout_counts.get(kv[0], 0), kv[0]))
    return [
        f"Held-out split: {report['clips']} clips from source packages the model never saw in training "
        "(split by package, `clap-train corpus`).",
        "",
        "| direction | R@1 | R@5 | R@10 | mAP@10 | median rank |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {_fmt_pct(m['R@1'])} | {_fmt_pct(m['R@5'])} | {_fmt_pct(m['R@10'])} | "
            f"{m['mAP@10']:.3f} | {m['median_rank']:g} |"
            for name, m in (("text->audio", t2a), ("audio->text", a2t))
        ),
        "",
        f"Zero-shot over the {zs.get('classes', len(per_class))} AudioSet classes present in the held-out split, "
        f"prompt `{report['template']}`: top-1 **{_fmt_pct(zs['top1'])}**, top-5 {_fmt_pct(zs['top5'])}, "
        f"mean per-class {_fmt_pct(zs['mean_per_class'])} ({report['zero_shot_clips']} clips).",
        "",
        "| class | held-out clips | training clips | accuracy |",
        "|---|---|---|---|",
        *(f"| {c} | {heldout_counts.get(c, 0)} | {train_counts.get(c, 0)} | {_fmt_pct(acc)} |" for c, acc in per_class),
        "",
    ]


def model_section(manifest) -> list[str]:
    """What the model is made of, from its manifest."""
    fe = manifest.audio_frontend
    if manifest.patched:
        space = manifest.text.label_space
        parts = ", ".join(
            f"{p.name} {p.dim}-d (text->audio weight {p.weight:.2f}, audio->audio "
            f"{p.audio_weight if p.audio_weight is not None else p.weight:.2f})"
            for p in manifest.joint
        )
        return [
            f"- Audio tower: {manifest.audio.architecture}: YAMNet (Google, Apache-2.0; trained on AudioSet, 521 "
            "classes), converted exactly from its TFLite weights (`training/convert/yamnet.py`), locked.",
            f"- Text tower: {manifest.text.architecture} (all-MiniLM-L6-v2, Apache-2.0, mean pooling), locked.",
            f"- Front end: {fe.sample_rate} Hz, {fe.n_mels} mel bands ({fe.f_min:g}-{fe.f_max:g} Hz), patches of "
            f"{fe.patch_frames} frames every {fe.patch_hop_frames} (0.96 s / 0.48 s); a file's vector pools the "
            "tower over ALL its patches, whatever its length (no crop); shorter than a patch: zero-filled to one.",
            *(
                [
                    f"- Label space: text -> cosine to the 521 prompts `{space.template}` -> softmax at temperature "
                    f"{space.temperature:g} -> L2, inside the text graph; the audio side's class scores meet it there."
                ]
                if space
                else []
            ),
            f"- Embedding: {manifest.embed_dim}-d, blocks {parts}.",
            f"- Shipped variant: `{manifest.default_variant}`; fingerprint `{manifest.fingerprint}`.",
            '- Licence: the YAMNet weights are Apache-2.0 (NOTICE: "YAMNet weights by Google, Apache-2.0"); '
            "see `LICENCES.md` and `NOTICE`.",
        ]
    return [
        f"- Audio tower: {manifest.audio.architecture} (the `aisfx` CNN, MIT, pretrained on professional "
        "sound-effects libraries), locked.",
        f"- Text tower: {manifest.text.architecture} (all-MiniLM-L6-v2, Apache-2.0), locked.",
        f"- Trained: the two projection heads into a {manifest.embed_dim}-d space and the temperatures, on "
        "cached tower outputs of augmented views (`training/cached.py`).",
        f"- Front end: {fe.sample_rate} Hz, {fe.n_mels} HTK mels, {fe.clip_samples / fe.sample_rate:g} s clips "
        "(longer files: centre crop), peak-normalised.",
        f"- Shipped variant: `{manifest.default_variant}`; fp32 measured at export and pinned in the manifest "
        f"(fingerprint `{manifest.fingerprint}`).",
    ]


def comparison_section(model_name: str, report: dict, others: dict[str, dict]) -> str:
    """The held-out numbers of this model beside other model folders measured in the same run."""
    rows = {model_name: report, **others}
    lines = [
        "## Compared on the same held-out clips",
        "",
        "| model | zero-shot top-1 | text->audio R@1 | R@10 | mAP@10 | audio->text R@10 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        t2a, a2t = r["retrieval"]["text_to_audio"], r["retrieval"]["audio_to_text"]
        lines.append(
            f"| {name} | {_fmt_pct(r['zero_shot']['top1'])} | {_fmt_pct(t2a['R@1'])} | "
            f"{_fmt_pct(t2a['R@10'])} | {t2a['mAP@10']:.3f} | {_fmt_pct(a2t['R@10'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from indexer.models.manifest import load_manifest

    p = argparse.ArgumentParser(prog="clap-train model-card", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument(
        "--corpus", type=Path, required=True, help="corpus folder (manifest.jsonl, report.json, LICENCES.md)"
    )
    p.add_argument("--run", type=Path, required=True, help="training run folder (train_config.json)")
    p.add_argument("--split", default="heldout")
    p.add_argument("--template", default="This is a sound of {label}.")
    p.add_argument("--compute", action="append", default=[], metavar="KEY=VALUE", help="e.g. 'training time=12 min'")
    p.add_argument("--notes", type=Path, help="markdown appended to the card (e.g. the alternatives tried)")
    p.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="another model folder evaluated on the same clips in this run (e.g. the previous default)",
    )
    args = p.parse_args(argv)

    manifest = load_manifest(args.model)
    records = read_corpus(args.corpus / "manifest.jsonl")
    heldout = [r for r in records if r.split == args.split]
    report = heldout_evaluation(args.model, heldout, args.template)
    (args.model / "heldout_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    corpus_report = (
        json.loads((args.corpus / "report.json").read_text()) if (args.corpus / "report.json").is_file() else {}
    )
    train_config = json.loads((args.run / "train_config.json").read_text())
    compute = {
        "machine": f"{platform.processor() or platform.machine()}, CPU only",
        **dict(item.split("=", 1) for item in args.compute),
    }
    card = render_card(
        args.model,
        manifest,
        report,
        corpus_report,
        train_config,
        coverage(records, "train"),
        coverage(records, args.split),
        compute,
    )
    if args.compare:
        others = {load_manifest(m).name: heldout_evaluation(m, heldout, args.template) for m in args.compare}
        report["compared"] = {
            name: {"zero_shot_top1": r["zero_shot"]["top1"], "retrieval": r["retrieval"]} for name, r in others.items()
        }
        (args.model / "heldout_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        card = card.rstrip("\n") + "\n\n" + comparison_section(manifest.name, report, others)
    if args.notes is not None:
        card = card.rstrip("\n") + "\n\n" + args.notes.read_text()
    (args.model / "MODEL_CARD.md").write_text(card)
    if (args.corpus / "LICENCES.md").is_file():
        shutil.copyfile(args.corpus / "LICENCES.md", args.model / "LICENCES.md")
    print(card.split("## Known gaps")[0])
    return 0
