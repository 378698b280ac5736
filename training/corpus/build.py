"""Build the captioned corpus: sources -> candidates -> checked, de-duplicated, windowed FLACs
plus ``manifest.jsonl``, ``report.json`` and ``LICENCES.md``.

Why split by source package: clips of one package share recordists, microphones and often the
very same recording cut differently; a random split would let the model "recognise" a held-out
clip it half-heard in training. Held-out packages are chosen so their classes also occur in
training packages (rain/thunder/engines/birds in supertuxkart-data, footsteps/glass in
minetest-data), so held-out numbers measure generalisation to unseen recordings.

Every stage is idempotent: ``.deb`` files and extractions stay in the cache, fluidsynth renders are
reused, decode results are cached in ``OUT/.cache/analysis.json`` by (path, size, mtime), and
existing FLACs are not rewritten. ``BuildConfig.roots`` maps a package to an already-extracted
folder, which bypasses apt entirely (tests, offline machines).
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from training.corpus import audio as A
from training.corpus.captions import describe, make_captions
from training.corpus.extract import Candidate, FetchError, candidates, fetch, open_nested
from training.corpus.ontology import load_ontology
from training.corpus.report import licences_md, summarise
from training.corpus.sources import (
    EXTRA_PREFIX,
    FLUIDSYNTH_LICENCE,
    FLUIDSYNTH_PACKAGE,
    SOURCES,
    Source,
)

DEFAULT_HELDOUT = ("supertuxkart-data", "minetest-data", EXTRA_PREFIX + "runsy/petz")
DEFAULT_VAL = ("widelands-data", EXTRA_PREFIX + "ElCeejo/animalia")
SPLIT_ORDER = {"train": 0, "val": 1, "heldout": 2}
EXTRA_SOURCE = Source(
    "extra-sfx",
    "see manifest",
    noise_words=frozenset("sounds mobs mcl mobs_mc petz animalia ambience homedecor technic default".split()),
)


@dataclass
class BuildConfig:
    """Everything one build needs; the CLI fills it from flags."""

    out: Path
    cache: Path = Path("data/deb-cache")
    packages: tuple[str, ...] | None = None  # None: every source in ``sources``
    skip_packages: tuple[str, ...] = ()
    extra: Path | None = None  # extra-sfx folder (manifest.csv)
    heldout: tuple[str, ...] = DEFAULT_HELDOUT
    val: tuple[str, ...] = DEFAULT_VAL
    fluidsynth: bool = True
    workers: int = max(1, os.cpu_count() or 1)
    roots: dict[str, Path] = field(default_factory=dict)  # package -> extracted folder (no apt)
    sources: tuple[Source, ...] = SOURCES
    ontology: str | None = None
    min_s: float = 0.3
    long_s: float = 12.0
    window_s: float = 10.0
    hop_s: float = 10.0
    max_windows: int = 6
    dedupe_threshold: float = 0.995
    progress: bool = True


def split_of(package: str, cfg: BuildConfig) -> str:
    if package in cfg.heldout:
        return "heldout"
    if package in cfg.val:
        return "val"
    return "train"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def clip_meta(c: Candidate, k: int, span: tuple[float, float], primary_label: str | None, whole: bool, **extra) -> dict:
    """A corpus row's ``meta``: where the clip came from, which window ``k`` of the file unless it is
    the whole file, the ``extra`` keys, then the file's own description if it has one."""
    s, e = span
    meta = {
        "package": c.package,
        "source_path": c.source_path or c.rel_path,
        "attribution": c.attribution,
        "duration_s": round(e - s, 3),
        "primary_label": primary_label,
        "window": None if whole else {"index": k, "start_s": round(s, 3), "end_s": round(e, 3)},
        **extra,
    }
    if c.text:
        meta["source_text"] = c.text
    return meta


def _extra_candidates(folder: Path) -> list[Candidate]:
    """extra-sfx rows; each source repository counts as a "package" for splitting."""
    rows = list(csv.DictReader(open(folder / "manifest.csv", encoding="utf-8")))
    out = []
    for r in rows:
        words = tuple(w.strip() for w in re.split(r"[,;]", r.get("label_words", "")) if w.strip())
        out.append(
            Candidate(
                EXTRA_PREFIX + r["source_repo"],
                folder / r["path"],
                r["path"],
                r.get("licence", ""),
                given=(r["caption"],) if r.get("caption") else (),
                extra_words=words,
                attribution=r.get("attribution", ""),
                source_path=f"{r['source_repo']}/{r.get('source_path', '')}",
            )
        )
    return out


def _tqdm(it, cfg: BuildConfig, **kw):
    if not cfg.progress:
        return it
    from tqdm import tqdm

    return tqdm(it, **kw)


def _analyse_job(args: tuple[str, float]) -> A.Analysis:
    return A.analyse(args[0], args[1])


def _write_job(args: tuple[str, list[tuple[str, float, float]]]) -> list[bool] | str:
    src, targets = args
    try:
        return A.write_clips(src, [(Path(p), s, e) for p, s, e in targets])
    except Exception as exc:  # one unwritable file must not stop the build
        return f"write failed ({type(exc).__name__})"


def _pmap(fn, jobs: list, cfg: BuildConfig, desc: str) -> list:
    if cfg.workers <= 1 or len(jobs) < 8:
        return [fn(j) for j in _tqdm(jobs, cfg, desc=desc)]
    with ProcessPoolExecutor(cfg.workers) as pool:
        return list(_tqdm(pool.map(fn, jobs, chunksize=4), cfg, desc=desc, total=len(jobs)))


def collect(cfg: BuildConfig, report: dict) -> tuple[list[Candidate], dict[str, dict]]:
    """All candidates, and per GM render the preset captions/tags/labels."""
    wanted = set(cfg.packages) if cfg.packages else None
    skip = set(cfg.skip_packages)
    cands: list[Candidate] = []
    presets: dict[str, dict] = {}
    for src in cfg.sources:
        if (wanted is not None and src.package not in wanted) or src.package in skip:
            continue
        pk = report["packages"].setdefault(src.package, {"licence": src.licence})
        try:
            if src.package in cfg.roots:
                root = Path(cfg.roots[src.package])
                open_nested(src, root)
            else:
                root = fetch(src, cfg.cache)
        except FetchError as exc:
            pk["dropped"] = str(exc)
            continue
        skipped: dict[str, int] = {}
        found = candidates(src, Path(root), skipped)
        pk["files_found"] = len(found) + sum(skipped.values())
        pk["filtered"] = dict(skipped)
        cands += found
    if cfg.fluidsynth and (wanted is None or FLUIDSYNTH_PACKAGE in wanted) and FLUIDSYNTH_PACKAGE not in skip:
        pk = report["packages"].setdefault(FLUIDSYNTH_PACKAGE, {"licence": FLUIDSYNTH_LICENCE})
        try:
            from training.corpus.gm import render_all

            rendered = render_all(cfg.cache / "fluidsynth")
            pk["files_found"], pk["filtered"] = len(rendered), {}
            for r, wav in rendered:
                cands.append(
                    Candidate(
                        FLUIDSYNTH_PACKAGE,
                        wav,
                        f"{r.name}.wav",
                        FLUIDSYNTH_LICENCE,
                        given=(r.phrase,),
                        extra_words=r.tags,
                        attribution="FluidR3 GM soundfont by Frank Wen (MIT), rendered with FluidSynth",
                        source_path=f"program render {r.name}",
                    )
                )
                presets[str(wav)] = {"labels": list(r.labels)}
        except (RuntimeError, OSError) as exc:
            pk["dropped"] = str(exc)
    if cfg.extra:
        extra = _extra_candidates(Path(cfg.extra))
        for c in extra:
            if (
                (wanted is None or c.package in wanted or "extra-sfx" in wanted)
                and c.package not in skip
                and "extra-sfx" not in skip
            ):
                cands.append(c)
                pk = report["packages"].setdefault(
                    c.package, {"licence": "per file (manifest)", "files_found": 0, "filtered": {}}
                )
                pk["files_found"] += 1
    return cands, presets


def _load_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def build(cfg: BuildConfig) -> dict:
    """Run the whole build; returns the report (also written to ``OUT/report.json``)."""
    t0 = time.time()
    out = Path(cfg.out)
    (out / ".cache").mkdir(parents=True, exist_ok=True)
    report: dict = {
        "packages": {},
        "config": {
            "heldout": list(cfg.heldout),
            "val": list(cfg.val),
            "min_s": cfg.min_s,
            "long_s": cfg.long_s,
            "window_s": cfg.window_s,
            "hop_s": cfg.hop_s,
            "max_windows": cfg.max_windows,
            "dedupe_threshold": cfg.dedupe_threshold,
        },
    }
    cands, presets = collect(cfg, report)
    srcs = {s.package: s for s in cfg.sources}

    # 1. decode check (cached by path, size and mtime)
    cache_path = out / ".cache" / "analysis.json"
    cache = _load_cache(cache_path)

    def key(c: Candidate) -> str:
        st = c.path.stat()
        return f"{c.path}|{st.st_size}|{int(st.st_mtime)}|{cfg.min_s}"

    keys = {}
    for c in cands:
        try:
            keys[str(c.path)] = key(c)
        except OSError:
            keys[str(c.path)] = ""
    todo = [c for c in cands if keys[str(c.path)] and keys[str(c.path)] not in cache]
    results = _pmap(_analyse_job, [(str(c.path), cfg.min_s) for c in todo], cfg, "decode")
    for c, res in zip(todo, results):
        cache[keys[str(c.path)]] = res.__dict__
    cache_path.write_text(json.dumps(cache))
    analysis = {
        str(c.path): A.Analysis(**cache[keys[str(c.path)]]) if keys[str(c.path)] else A.Analysis("missing file")
        for c in cands
    }

    # 2. drop unusable clips, then duplicates (train sources first, so leaks leave held-out)
    ok: list[Candidate] = []
    for c in cands:
        a = analysis[str(c.path)]
        if a.status != "ok":
            f = report["packages"][c.package].setdefault("filtered", {})
            f[a.status] = f.get(a.status, 0) + 1
        else:
            ok.append(c)
    ok.sort(key=lambda c: (SPLIT_ORDER[split_of(c.package, cfg)], c.package, c.rel_path))
    dups = A.find_duplicates([(str(c.path), analysis[str(c.path)]) for c in ok], cfg.dedupe_threshold)
    by_path = {str(c.path): c for c in ok}
    duplicates = []
    for c in ok:
        if str(c.path) in dups:
            kept, how = dups[str(c.path)]
            duplicates.append(
                {
                    "dropped": f"{c.package}:{c.rel_path}",
                    "kept": f"{by_path[kept].package}:{by_path[kept].rel_path}",
                    "how": how,
                }
            )
            pk = report["packages"][c.package]
            pk["duplicates"] = pk.get("duplicates", 0) + 1
    ok = [c for c in ok if str(c.path) not in dups]

    # 3. describe, window and write
    onto = load_ontology(cfg.ontology)
    plans, used_names = [], set()
    for c in ok:
        a = analysis[str(c.path)]
        src = srcs.get(c.package, EXTRA_SOURCE)
        rel_for_words = Path(c.rel_path).name if c.package.startswith(EXTRA_PREFIX) else c.rel_path
        if c.package == FLUIDSYNTH_PACKAGE:  # the render table already says what it is
            captions, tags = make_captions(None, c.extra_words, c.given), list(c.extra_words)
        else:
            captions, tags, _ = describe(src, rel_for_words, c.given, c.extra_words)
        labels = presets.get(str(c.path), {}).get("labels") or onto.labels_for(tags)
        if not captions:
            f = report["packages"][c.package].setdefault("filtered", {})
            f["no caption words"] = f.get("no caption words", 0) + 1
            continue
        stem = re.sub(r"\.[A-Za-z0-9]+$", "", c.rel_path)
        base = out / "audio" / slug(c.package) / "/".join(slug(p) for p in stem.split("/"))
        if str(base) in used_names:
            base = base.with_name(base.name + "_" + slug(Path(c.rel_path).suffix.lstrip(".")))
        used_names.add(str(base))
        wins = A.windows(a.duration_s, cfg.long_s, cfg.window_s, cfg.hop_s, cfg.max_windows)
        targets = [
            (str(base) + ".flac", s, e)
            if len(wins) == 1 and s == 0 and e == a.duration_s
            else (f"{base}_w{k:02d}.flac", s, e)
            for k, (s, e) in enumerate(wins)
        ]
        plans.append((c, a, captions, tags, labels, targets))
    written = _pmap(_write_job, [(str(c.path), t) for c, _, _, _, _, t in plans], cfg, "write")

    rows = []
    for (c, a, captions, tags, labels, targets), res in zip(plans, written):
        pk = report["packages"][c.package]
        if isinstance(res, str):
            pk.setdefault("filtered", {})[res] = pk["filtered"].get(res, 0) + 1
            continue
        if len(targets) > 1 or targets[0][0].endswith("_w00.flac"):
            pk["windowed_files"] = pk.get("windowed_files", 0) + 1
        for k, ((path, s, e), good) in enumerate(zip(targets, res)):
            if not good:
                pk.setdefault("filtered", {})["silent window"] = pk["filtered"].get("silent window", 0) + 1
                continue
            whole = len(targets) == 1 and s == 0 and e == a.duration_s
            meta = clip_meta(c, k, (s, e), labels[0] if labels else None, whole)
            rows.append(
                {
                    "audio": os.path.relpath(path, out),
                    "captions": captions,
                    "tags": tags,
                    "labels": labels,
                    "split": split_of(c.package, cfg),
                    "licence": c.licence,
                    "meta": meta,
                }
            )
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    summarise(report, rows, duplicates)
    report["seconds"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "LICENCES.md").write_text(licences_md(report, rows, cfg.cache))
    return report
