"""Evaluate a CLAP model on a labelled/captioned manifest: retrieval, zero-shot, linear probe.

    clap-train evaluate --model models/my-clap --manifest clotho.jsonl --split test --out report.json

The same evaluation runs on an exported ONNX model folder (:class:`OnnxEmbedder`, what serving
uses) or on torch towers during training (:class:`TorchEmbedder`). Both turn audio into model
input with ``indexer.audio.views.file_views`` and tokenise texts exactly as
``ClapEncoder.embed_text`` does (no padding between texts of different length), so a model scores
the same in both, up to float rounding, and a difference in metrics means a difference in models.

Metrics are computed by the torch-free ``training.metrics``; the report is a JSON-serialisable
dataclass with the model identity, counts, the zero-shot template and timings.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ClapSearchError, ConfigError, EvaluationError, report_error
from training import metrics as M
from training.embedders import (  # noqa: F401  (re-exported: the evaluation API)
    CachedEmbedder,
    Embedder,
    EvalRecord,
    OnnxEmbedder,
    TorchEmbedder,
)

DEFAULT_TEMPLATE = "This is a sound of {label}."
TASKS = ("retrieval", "zeroshot", "linear-probe")
VAL_SPLITS = ("val", "valid", "validation")


# --------------------------------------------------------------------------------------- report
@dataclass
class TaskResult:
    task: str  # retrieval | zeroshot | zeroshot-multilabel | linear-probe
    metrics: dict[str, Any]
    counts: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class EvaluationReport:
    model: dict[str, Any]
    data: dict[str, Any]
    results: list[TaskResult]
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    seconds_total: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        results = [TaskResult(**r) for r in data["results"]]
        return cls(**{**data, "results": results})


def _jsonable(value: Any) -> Any:
    """Plain JSON types: string keys, Python numbers, NaN -> None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    return value


# ---------------------------------------------------------------------------------------- tasks
class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


def _audio(embedder: Embedder, paths: list[str], timer: _Timer) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(vectors, kept mask, skipped entries) with each distinct path embedded once."""
    unique = list(dict.fromkeys(paths))
    with timer("embed_audio"):
        vectors = embedder.embed_audio(unique) if unique else np.zeros((0, 0), np.float32)
    row = {p: i for i, p in enumerate(unique)}
    ok = ~np.isnan(vectors).any(axis=1) if len(unique) else np.zeros(0, bool)
    reasons = getattr(embedder, "failures", {})
    skipped = [{"path": p, "reason": reasons.get(p, "embedding failed")} for p in unique if not ok[row[p]]]
    keep = np.array([ok[row[p]] for p in paths], dtype=bool)
    return np.stack([vectors[row[p]] for p in paths]) if paths else vectors, keep, skipped


def evaluate_retrieval(embedder: Embedder, records: Sequence[EvalRecord]) -> TaskResult:
    """Text<->audio retrieval; records of the same audio file are merged into one gallery clip."""
    timer = _Timer()
    captions: dict[str, list[str]] = {}
    for r in records:
        own = captions.setdefault(str(r.audio), [])
        own.extend(c for c in r.captions if c not in own)
    paths = list(captions)
    audio, keep, skipped = _audio(embedder, paths, timer)
    paths = [p for p, k in zip(paths, keep) if k]
    texts, owner = [], []
    for clip, path in enumerate(paths):
        texts += captions[path]
        owner += [clip] * len(captions[path])
    if not texts:
        raise EvaluationError("retrieval needs captions: no (embedded) record has any")
    with timer("embed_text"):
        text = embedder.embed_texts(texts)
    with timer("metrics"):
        result = M.retrieval_metrics(audio[keep], text, np.array(owner))
    counts = {
        "records": len(records),
        "clips": len(paths),
        "captions": len(texts),
        "clips_with_captions": len(set(owner)),
        "skipped": len(skipped),
    }
    return TaskResult("retrieval", result, counts, {}, skipped, timer.seconds)


def _class_names(records: Sequence[EvalRecord], labels: Sequence[str] | None) -> list[str]:
    names = list(dict.fromkeys(labels)) if labels else sorted({lab for r in records for lab in r.labels})
    if not names:
        raise EvaluationError("zero-shot needs labels: no record has any and none were given")
    return names


def evaluate_zero_shot(
    embedder: Embedder,
    records: Sequence[EvalRecord],
    labels: Sequence[str] | None = None,
    template: str = DEFAULT_TEMPLATE,
    *,
    multilabel: bool = False,
) -> TaskResult:
    """Zero-shot classification with one text per class, ``template`` filled with the class name.

    Single-label: every record must carry exactly one label; records without a label, or whose
    label is not among ``labels``, are left out and counted. Multi-label: a record's labels
    outside ``labels`` are ignored and the score is class-wise mAP.
    """
    if "{label}" not in template:
        raise EvaluationError(f"template {template!r} has no {{label}} placeholder")
    timer = _Timer()
    names = _class_names(records, labels)
    index = {n: k for k, n in enumerate(names)}
    if multilabel:
        chosen = list(records)
    else:
        several = [r for r in records if len(r.labels) > 1]
        if several:
            raise EvaluationError(
                f"{len(several)} record(s) have several labels (first: {several[0].audio}: "
                f"{list(several[0].labels)}); use multilabel=True / --multilabel"
            )
        chosen = [r for r in records if r.labels and r.labels[0] in index]
    left_out = len(records) - len(chosen)
    audio, keep, skipped = _audio(embedder, [str(r.audio) for r in chosen], timer)
    chosen = [r for r, k in zip(chosen, keep) if k]
    if not chosen:
        raise EvaluationError("zero-shot: no record to classify")
    with timer("embed_text"):
        classes = embedder.embed_texts([template.replace("{label}", n) for n in names])
    with timer("metrics"):
        if multilabel:
            targets = np.array([[n in r.labels for n in names] for r in chosen], dtype=bool)
            result = M.zero_shot_multilabel(audio[keep], classes, targets)
            result["per_class_ap"] = {names[k]: v for k, v in result["per_class_ap"].items()}
            result["classes_without_positives"] = [names[k] for k in result["classes_without_positives"]]
        else:
            y = np.array([index[r.labels[0]] for r in chosen])
            result = M.zero_shot_metrics(audio[keep], classes, y)
            result["per_class"] = {names[k]: v for k, v in result["per_class"].items()}
            result["support"] = {names[k]: v for k, v in result["support"].items()}
    counts = {
        "records": len(records),
        "clips": len(chosen),
        "classes": len(names),
        "left_out": left_out,
        "skipped": len(skipped),
    }
    settings = {"template": template, "labels": names, "multilabel": multilabel}
    return TaskResult(
        "zeroshot-multilabel" if multilabel else "zeroshot", result, counts, settings, skipped, timer.seconds
    )


def evaluate_linear_probe(
    embedder: Embedder,
    train_records: Sequence[EvalRecord],
    test_records: Sequence[EvalRecord],
    val_records: Sequence[EvalRecord] | None = None,
    **probe_options,
) -> TaskResult:
    """Logistic regression on frozen audio embeddings of single-label records (classes: the train
    labels; val/test records with other labels, or without exactly one label, are left out)."""
    from training.linear_probe import run_linear_probe

    timer = _Timer()
    names = sorted({r.labels[0] for r in train_records if len(r.labels) == 1})
    index = {n: k for k, n in enumerate(names)}
    if len(names) < 2:
        raise EvaluationError(f"linear probe needs at least 2 classes in the train split, found {len(names)}")
    splits, skipped_all, counts = {}, [], {"classes": len(names)}
    for split, recs in (("train", train_records), ("val", val_records), ("test", test_records)):
        if recs is None:
            continue
        chosen = [r for r in recs if len(r.labels) == 1 and r.labels[0] in index]
        vectors, keep, skipped = _audio(embedder, [str(r.audio) for r in chosen], timer)
        y = np.array([index[r.labels[0]] for r, k in zip(chosen, keep) if k], dtype=np.int64)
        splits[split] = (vectors[keep] if len(chosen) else vectors, y)
        skipped_all += skipped
        counts[split] = int(y.shape[0])
        counts[f"{split}_left_out"] = len(recs) - len(chosen)
    if counts["train"] == 0 or counts["test"] == 0:
        raise EvaluationError("linear probe needs embedded train and test records")
    val = splits.get("val")
    with timer("fit"):
        result = run_linear_probe(
            *splits["train"],
            *splits["test"],
            num_classes=len(names),
            val_x=val[0] if val and val[1].size else None,
            val_y=val[1] if val and val[1].size else None,
            **probe_options,
        )
    metrics = result.to_dict()
    metrics["per_class_accuracy"] = {names[k]: v for k, v in result.per_class_accuracy.items()}
    counts["skipped"] = len(skipped_all)
    return TaskResult("linear-probe", metrics, counts, {"labels": names}, skipped_all, timer.seconds)


# ------------------------------------------------------------------------------------- display
def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_report(report: EvaluationReport) -> str:
    """A terminal summary: one block per task, a row per retrieval direction."""
    m = report.model
    lines = [
        f"model  {m.get('name', '?')} ({m.get('kind', '?')}"
        + (f" {m['variant']}, fingerprint {m.get('fingerprint')}" if "variant" in m else "")
        + ")",
        "data   " + "  ".join(f"{k}={v}" for k, v in report.data.items()),
    ]
    for r in report.results:
        counts = ", ".join(f"{k} {v}" for k, v in r.counts.items())
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in r.seconds.items())
        lines += ["", f"{r.task}: {counts}  [{timing}]"]
        if r.task == "retrieval":
            keys = [k for k in r.metrics["text_to_audio"]]
            lines.append(f"  {'':<14}" + "".join(f"{k:>12}" for k in keys))
            for direction, values in r.metrics.items():
                lines.append(f"  {direction:<14}" + "".join(f"{_fmt(values[k]):>12}" for k in keys))
        else:
            if "template" in r.settings:
                lines.append(f"  template: {r.settings['template']!r}")
            per_class = {}
            for key, value in r.metrics.items():
                if isinstance(value, dict):
                    per_class = value if key.startswith("per_class") else per_class
                elif not isinstance(value, list):
                    lines.append(f"  {key:<26}{_fmt(value)}")
            if per_class:
                lines.append("  per class: " + ", ".join(f"{k} {_fmt(v)}" for k, v in per_class.items()))
        for s in r.skipped[:5]:
            lines.append(f"  skipped {s['path']}: {s['reason']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- CLI
def _label_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(";" if ";" in text else ",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clap-train evaluate", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="exported model folder (manifest.json + ONNX)")
    src.add_argument("--checkpoint", type=Path, help="training checkpoint (evaluated with torch)")
    p.add_argument("--variant", help="ONNX variant of --model (default: the manifest's default variant)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--manifest", type=Path, required=True, help="data manifest (.jsonl, .csv, Clotho, AudioCaps)")
    p.add_argument("--audio-dir", type=Path, help="folder the manifest's audio paths are relative to")
    p.add_argument("--split", default="test", help="split to evaluate; 'all' = every record")
    p.add_argument("--train-split", default="train", help="linear probe training split")
    p.add_argument("--val-split", default=None, help="linear probe validation split (default: val/valid/validation)")
    p.add_argument("--task", choices=(*TASKS, "all"), default="all")
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="zero-shot text; {label} is replaced")
    p.add_argument(
        "--labels",
        type=_label_list,
        help="class names separated by ',' (or by ';' when "
        "names contain commas, as AudioSet's do); default: every label in the split",
    )
    p.add_argument("--multilabel", action="store_true", help="zero-shot as multi-label tagging (mAP)")
    p.add_argument("--skip-failed", action="store_true", help="leave out audio that fails to decode")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    return p


def _split(records: Sequence, names: Sequence[str | None]) -> list:
    return list(records) if "all" in names else [r for r in records if getattr(r, "split", None) in names]


def _run_tasks(embedder: Embedder, records: Sequence, test: list, args: argparse.Namespace) -> list[TaskResult]:
    """The requested tasks; ``--task all`` runs those the data supports and skips the others."""
    every = args.task == "all"
    results = []
    if args.task in ("retrieval", "all") and not (every and not any(r.captions for r in test)):
        results.append(evaluate_retrieval(embedder, test))
    if args.task in ("zeroshot", "all") and not (every and not any(r.labels for r in test)):
        results.append(evaluate_zero_shot(embedder, test, args.labels, args.template, multilabel=args.multilabel))
    train = _split(records, [args.train_split])
    if args.task == "linear-probe" or (every and train and not args.multilabel and args.split != "all"):
        val = _split(records, [args.val_split] if args.val_split else VAL_SPLITS)
        results.append(evaluate_linear_probe(embedder, train, test, val or None))
    if not results:
        raise EvaluationError("nothing to evaluate: the split has neither captions nor labels")
    return results


def main(
    argv: list[str] | None = None,
    *,
    read_records: Callable | None = None,
    torch_loader: Callable[[Path, argparse.Namespace], Embedder] | None = None,
) -> int:
    """``read_records(path, **kw)`` returns records or ``(records, issues)`` (default:
    ``training.data.readers.read_any``); ``torch_loader(checkpoint, args)`` returns an
    :class:`Embedder` (e.g. a :class:`TorchEmbedder`) for ``--checkpoint``: without one,
    ``--checkpoint`` is refused with a message."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        kw = {"audio_dir": args.audio_dir} if args.audio_dir else {}
        if read_records is None:
            from training.data.readers import read_any as read_records
        loaded = read_records(args.manifest, **kw)
        records, issues = loaded if isinstance(loaded, tuple) and len(loaded) == 2 else (loaded, [])
        if issues:
            print(f"note: {len(issues)} manifest line(s) skipped in {args.manifest}", file=sys.stderr)
        test = _split(records, [args.split])
        if not test:
            present = ", ".join(sorted({str(getattr(r, "split", None)) for r in records}))
            raise EvaluationError(
                f"no records in split {args.split!r} (splits present: {present}; --split all uses every record)"
            )
        if args.checkpoint is not None:
            if torch_loader is None:
                raise EvaluationError(
                    "--checkpoint: no checkpoint loader is available in this build; "
                    "export the checkpoint to a model folder and pass --model"
                )
            embedder = CachedEmbedder(torch_loader(args.checkpoint, args))
        else:
            embedder = CachedEmbedder(
                OnnxEmbedder(args.model, args.variant, device=args.device, skip_failed=args.skip_failed)
            )
        results = _run_tasks(embedder, records, test, args)
    except (ClapSearchError, ValueError) as exc:  # data problems: a message, not a traceback
        return report_error(exc if isinstance(exc, ClapSearchError) else ConfigError(str(exc)))
    report = EvaluationReport(
        model=embedder.identity,
        results=results,
        data={"manifest": str(args.manifest), "split": args.split, "records": len(test)},
        seconds_total=round(time.perf_counter() - start, 3),
    )
    print(format_report(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.to_json() + "\n")
        print(f"\nwrote {args.out}")
    return 0
