"""``clap-train corpus-pseudo``: grow the train split with captions YAMNet agrees with.

    clap-train corpus-pseudo --corpus data/corpus \
        --yamnet ../shared/data/pretrained/yamnet/yamnet_spectra_in.tflite

Why: many train-package files were dropped because their paths say little ("beats_01-37",
"ele3", UI folders), and kept clips carry only what their path says. This step runs YAMNet over
every train clip and over every audio file of the train Debian packages that is not in the
corpus yet (long files cut into windows by the build's :func:`~training.corpus.audio.windows`),
and turns agreeing labels into captions (policy: :mod:`training.corpus.pseudo_labels`).
Writes ``CORPUS/manifest_pseudo.jsonl`` (the manifest's schema; new clips and extended clips
carry ``meta.pseudo``), new FLACs under ``CORPUS/audio/`` named as the build names them, and
``CORPUS/report_pseudo.json``. ``manifest.jsonl`` itself is never changed.

Split protection: only packages whose clips are all "train" (and not named val/held-out in
``report.json``) are scanned or tagged; val/held-out rows are copied verbatim; every new window
is de-duplicated (the build's spectral fingerprint) against ALL existing clips, so a held-out
recording cannot return through a train package's copy. New clips come from Debian packages
only: extra-sfx originals are Freesound uploads, so those clips may gain captions, never
siblings; nothing named ESC-50/ESC-10/Freesound is ever a source. The path-word filters that
encode content decisions (music/speech words, each source's skip words such as combat) still
apply; the folder include/exclude rules do not, since YAMNet now judges what is in a file.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.corpus import audio as A
from training.corpus.build import clip_meta, slug
from training.corpus.captions import describe
from training.corpus.extract import candidates
from training.corpus.ontology import load_ontology
from training.corpus.pseudo_labels import (
    CLASS_MAP,
    PseudoConfig,
    Tagger,
    cached,
    class_captions,
    class_tree,
    judge,
    yamnet_tagger,
)
from training.data.captions import clean_tags

__all__ = ["PseudoConfig", "judge", "main", "report_path", "run", "yamnet_tagger"]
FORBIDDEN = re.compile(r"esc-?50|esc-?10|freesound", re.I)
WHOLE = (0.0, math.inf)  # a span meaning "all of the file"


class _Analyses:
    """The build's decode analysis, cached by path, size, mtime and min_s (the build's own cache
    is read, never written)."""

    def __init__(self, out: Path):
        self.path = out / ".cache" / "pseudo_analysis.json"
        self.data: dict = {}
        for p in (out / ".cache" / "analysis.json", self.path):
            try:
                self.data.update(json.loads(p.read_text()))
            except (OSError, ValueError):
                pass
        self.dirty = False

    def get(self, path: Path, min_s: float) -> A.Analysis:
        st = path.stat()
        key = f"{path}|{st.st_size}|{int(st.st_mtime)}|{min_s}"
        if key not in self.data:
            self.data[key], self.dirty = A.analyse(path, min_s).__dict__, True
        return A.Analysis(**self.data[key])

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data))


def _window_prints(path: Path, a: A.Analysis, spans: list) -> list[A.Analysis | None]:
    """One analysis per window (None: silent), so windows are de-duplicated one by one."""
    if len(spans) == 1 and spans[0] == (0.0, a.duration_s):
        return [a]
    x, sr = A.read_mono(path)
    out: list[A.Analysis | None] = []
    for k, (s, e) in enumerate(spans):
        seg = x[int(round(s * sr)) : int(round(e * sr))]
        quiet = seg.size == 0 or float(np.max(np.abs(seg))) < A.SILENCE_PEAK
        out.append(
            None if quiet else A.Analysis("ok", e - s, sr, f"{a.sha1}#{k}", A.fingerprint(seg, sr).round(5).tolist())
        )
    return out


def _hours(rows: list[dict], split: str | None = None) -> dict:
    sel = [r for r in rows if split is None or r["split"] == split]
    return {"clips": len(sel), "hours": round(sum(r["meta"]["duration_s"] for r in sel) / 3600, 3)}


def _calibration(pairs: list[tuple[float, bool]]) -> list[dict]:
    """How often YAMNet's top class agrees with an existing clip's path labels, by its score:
    an estimate of the "confident" rule's precision."""
    out = []
    for t in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        hit = [ok for s, ok in pairs if s >= t]
        out.append({"min_score": t, "clips": len(hit), "agree": round(sum(hit) / len(hit), 3) if hit else None})
    return out


def report_path(cfg: PseudoConfig) -> Path:
    """``manifest_pseudo.jsonl`` -> ``report_pseudo.json`` beside it."""
    stem = Path(cfg.out_name).stem
    return Path(cfg.corpus) / (
        (stem.replace("manifest", "report", 1) if "manifest" in stem else stem + "_report") + ".json"
    )


def run(cfg: PseudoConfig, tagger: Tagger, names: list[str]) -> dict:
    """The whole step; returns the report (also written beside the manifest)."""
    t0 = time.time()
    out = Path(cfg.corpus)
    rows = [json.loads(ln) for ln in open(out / "manifest.jsonl", encoding="utf-8") if ln.strip()]
    try:
        built = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        built = {}
    bc = built.get("config", {})
    win = (bc.get("long_s", 12.0), bc.get("window_s", 10.0), bc.get("hop_s", 10.0), bc.get("max_windows", 6))
    onto = load_ontology(cfg.ontology)
    tree = class_tree(names, onto, cfg.excluded_roots)
    protected = (
        {r["meta"]["package"] for r in rows if r["split"] != "train"}
        | set(bc.get("heldout", []))
        | set(bc.get("val", []))
    )
    train = ({r["meta"]["package"] for r in rows} | set(built.get("packages", {}))) - protected
    stats: dict[str, dict] = {}

    def bump(pkg: str, key: str, n: int = 1) -> None:
        st = stats.setdefault(pkg, {})
        st[key] = st.get(key, 0) + n

    # 1. the pool: every audio file of a train Debian package that the corpus does not hold
    have = {(r["meta"]["package"], r["meta"]["source_path"]) for r in rows}
    pool = []
    for src in sorted(cfg.sources, key=lambda s: s.package):
        if src.package not in train or FORBIDDEN.search(src.package):
            continue
        root = Path(cfg.roots.get(src.package, cfg.cache / "extracted" / src.package))
        if not root.is_dir():
            bump(src.package, "not extracted")
            continue
        words: dict[str, int] = {}
        found = candidates(replace(src, include=(), exclude=()), root, words)
        stats.setdefault(src.package, {})["path-word filters"] = words
        new = [c for c in found if (src.package, c.rel_path) not in have]
        bump(src.package, "pool files", len(new))
        pool += [(src, c) for c in new]
    leak = {c.package for _, c in pool} & protected
    if leak:  # cannot happen by construction; refuse loudly if it ever does
        raise ValueError(f"val/held-out packages in the pool: {sorted(leak)}")

    # 2. decode check, windows, de-duplication against every existing clip (all splits)
    an = _Analyses(out)
    items = [(f"old:{r['audio']}", a) for r in rows if (a := an.get(out / r["audio"], 0.0)).status == "ok"]
    plans = []
    for src, c in pool:
        a = an.get(c.path, bc.get("min_s", 0.3))
        if a.status != "ok":
            bump(c.package, a.status)
            continue
        spans = A.windows(a.duration_s, *win)
        keep = []
        for k, ((s, e), w) in enumerate(zip(spans, _window_prints(c.path, a, spans))):
            if w is None:
                bump(c.package, "silent window")
            else:
                items.append((f"new:{c.package}:{c.rel_path}#{k}", w))
                keep.append((k, s, e))
        plans.append((src, c, a, spans, keep))
    an.save()
    dups = A.find_duplicates(items, bc.get("dedupe_threshold", 0.995))
    split_of = {f"old:{r['audio']}": r["split"] for r in rows}
    blocked = sorted(
        f"{k[4:]} = {kept[4:]}"
        for k, (kept, _) in dups.items()
        if k.startswith("new:") and split_of.get(kept, "train") != "train"
    )

    def bar(it, desc):
        if not cfg.progress:
            return it
        from tqdm import tqdm

        return tqdm(it, desc=desc)

    # 3. existing train clips: extra captions from agreeing classes
    counts = {"agreement": 0, "confidence": 0, "path_words_on_new_clips": 0, "existing_clips_extended": 0}
    flagged, pairs, out_rows = [], [], []
    for r in bar(rows, "tag corpus"):
        pkg = r["meta"]["package"]
        if r["split"] != "train" or pkg in protected or FORBIDDEN.search(pkg):
            out_rows.append(r)
            continue
        sc = np.round(tagger(str(out / r["audio"]), [WHOLE])[0], 4)
        verdict, classes = judge(sc, r["labels"], tree, cfg)
        bump(pkg, f"existing: {verdict}")
        if verdict == "music/speech":
            flagged.append(r["audio"])
        elif r["labels"]:
            top = max(np.nonzero(tree.usable)[0], key=lambda k: sc[k])
            pairs.append((float(sc[top]), tree.agrees(names[top], r["labels"])))
        seen = {c.lower().rstrip(".") for c in r["captions"]}
        add = (
            [c for c in class_captions(classes, onto) if c.lower().rstrip(".") not in seen] if verdict == "path" else []
        )
        if add:
            r = {
                **r,
                "captions": r["captions"] + add,
                "meta": {
                    **r["meta"],
                    "pseudo": {
                        "classes": classes,
                        "scores": [round(float(sc[names.index(n)]), 4) for n in classes],
                        "agreement": "path",
                        "new": False,
                        "added_captions": len(add),
                    },
                },
            }
            counts["agreement"] += len(add)
            counts["existing_clips_extended"] += 1
            bump(pkg, "existing clips extended")
        out_rows.append(r)

    # 4. new files: caption the windows YAMNet agrees on (or is sure of), write their FLACs
    taken = {r["audio"] for r in rows}
    new_rows = []
    for src, c, _a, spans, keep in bar(plans, "tag new files"):
        alive = [(k, s, e) for k, s, e in keep if f"new:{c.package}:{c.rel_path}#{k}" not in dups]
        bump(c.package, "duplicate windows", len(keep) - len(alive))
        if not alive:
            continue
        whole = len(spans) == 1
        scores = tagger(str(c.path), [WHOLE] if whole else [(s, e) for _, s, e in alive])
        path_caps, path_tags, _ = describe(src, c.rel_path, c.given, c.extra_words)
        path_labels = onto.labels_for(path_tags)
        stem = re.sub(r"\.[A-Za-z0-9]+$", "", c.rel_path)
        base = f"audio/{slug(c.package)}/" + "/".join(slug(p) for p in stem.split("/"))
        if any(t.startswith(base + ".") or t.startswith(base + "_w") for t in taken):
            base += "_yamnet"  # a name the corpus already uses for another file
        accepted = []
        for (k, s, e), sc in zip(alive, np.round(scores, 4)):
            verdict, classes = judge(sc, path_labels, tree, cfg)
            bump(c.package, f"new: {verdict}")
            if verdict in ("path", "confident"):
                rel = f"{base}.flac" if whole else f"{base}_w{k:02d}.flac"
                accepted.append((k, s, e, rel, verdict, classes, sc))
        ok = (
            A.write_clips(c.path, [(out / t[3], t[1], t[2]) for t in accepted])
            if cfg.write and accepted
            else [True] * len(accepted)
        )
        for (k, s, e, rel, verdict, classes, sc), good in zip(accepted, ok):
            if not good:
                bump(c.package, "silent window")
                continue
            caps = class_captions(classes, onto)
            counts["agreement" if verdict == "path" else "confidence"] += len(caps)
            if verdict == "path":
                more = [p for p in path_caps if p.lower().rstrip(".") not in {x.lower().rstrip(".") for x in caps}]
                counts["path_words_on_new_clips"] += len(more)
                caps = caps + more
            labels = list(dict.fromkeys(classes + (path_labels if verdict == "path" else [])))
            labels.sort(key=lambda n: -onto.depth.get(n, 0))
            tags = clean_tags(
                (path_tags if verdict == "path" else [])
                + [re.sub(r"\s*\(.*?\)", "", n.split(", ")[0]).lower() for n in classes]
            )
            scored = [round(float(sc[names.index(n)]), 4) for n in classes]
            pseudo = {"classes": classes, "scores": scored, "agreement": verdict, "new": True}
            meta = clip_meta(c, k, (s, e), labels[0], whole, pseudo=pseudo)
            new_rows.append(
                {
                    "audio": rel,
                    "captions": caps,
                    "tags": tags,
                    "labels": labels,
                    "split": "train",
                    "licence": c.licence,
                    "meta": meta,
                }
            )
            bump(c.package, f"new clips ({verdict})")
            bump(c.package, "new seconds", round(e - s, 3))
    new_rows.sort(key=lambda r: r["audio"])
    final = out_rows + new_rows
    report = {
        "config": {
            k: getattr(cfg, k)
            for k in "agree_min confident_min music_speech_max top_k max_classes excluded_roots out_name".split()
        },
        "before": {"all": _hours(rows), "train": _hours(rows, "train")},
        "after": {
            "all": _hours(final),
            "train": _hours(final, "train"),
            "new_clips": {
                v: sum(r["meta"]["pseudo"]["agreement"] == v for r in new_rows) for v in ("path", "confident")
            },
            "new_hours": round(sum(r["meta"]["duration_s"] for r in new_rows) / 3600, 3),
        },
        "captions": counts,
        "protected_packages": sorted(protected),
        "new_windows_matching_val_or_heldout": {"count": len(blocked), "examples": blocked[:20]},
        "existing_flagged_music_speech": {"count": len(flagged), "examples": flagged[:20]},
        "calibration_existing_top_class": _calibration(pairs),
        "packages": {k: stats[k] for k in sorted(stats)},
    }
    if cfg.write:
        with open(out / cfg.out_name, "w", encoding="utf-8") as fh:
            for r in final:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    report["seconds"] = round(time.time() - t0, 1)
    report_path(cfg).write_text(json.dumps(report, indent=2) + "\n")
    return report


# PseudoConfig fields with a flag of their own (--agree-min ...).
_TUNED = ("agree_min", "confident_min", "music_speech_max", "top_k", "max_classes", "out_name")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clap-train corpus-pseudo", description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="corpus folder with manifest.jsonl")
    p.add_argument("--yamnet", type=Path, required=True, help="yamnet_spectra_in.tflite")
    p.add_argument("--class-map", type=Path, default=CLASS_MAP)
    p.add_argument(
        "--cache",
        type=Path,
        default=Path("data/deb-cache"),
        help="the corpus build's package cache (extracted/<package>)",
    )
    defaults = PseudoConfig(Path("."))
    for name in _TUNED:  # typed and defaulted by PseudoConfig
        default = getattr(defaults, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    p.add_argument("--dry-run", action="store_true", help="report only: no FLACs, no manifest")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    from training.convert.yamnet import class_names

    tuned = {name: getattr(a, name) for name in _TUNED}
    cfg = PseudoConfig(a.corpus, a.cache, **tuned, write=not a.dry_run, progress=not a.no_progress)
    st = a.yamnet.stat()
    tag, save = cached(
        yamnet_tagger(a.yamnet, a.threads), a.corpus / ".cache" / "pseudo_scores.npz", f"{a.yamnet.name}:{st.st_size}"
    )
    try:
        report = run(cfg, tag, class_names(a.class_map))
    finally:
        save()
    print(json.dumps({k: report[k] for k in ("before", "after", "captions", "seconds")}, indent=2))
    print(f"report: {report_path(cfg)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
