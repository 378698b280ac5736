"""Summaries of a corpus build: ``report.json`` counts and the ``LICENCES.md`` a model must carry.

Why a separate module: the numbers here are what the model card and reviewers read (what was
kept, what was dropped and why, how many hours per split, which labels are covered), and the
licence file is a legal obligation for redistributing a model trained on CC-BY/CC-BY-SA audio.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path


def summarise(report: dict, rows: list[dict], duplicates: list[dict]) -> None:
    """Fill ``report`` in place: per package kept clips/hours, per split, per label, duplicates."""
    per_pkg: dict[str, dict] = defaultdict(lambda: {"clips": 0, "seconds": 0.0, "files": set()})
    splits: dict[str, dict] = defaultdict(lambda: {"clips": 0, "seconds": 0.0, "packages": set()})
    labels: Counter = Counter()
    label_split: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        m = r["meta"]
        p = per_pkg[m["package"]]
        p["clips"] += 1
        p["seconds"] += m["duration_s"]
        p["files"].add(m["source_path"])
        s = splits[r["split"]]
        s["clips"] += 1
        s["seconds"] += m["duration_s"]
        s["packages"].add(m["package"])
        if m.get("primary_label"):
            labels[m["primary_label"]] += 1
            label_split[m["primary_label"]][r["split"]] += 1
    for name, pk in report["packages"].items():
        got = per_pkg.get(name)
        pk["kept_files"] = len(got["files"]) if got else 0
        pk["clips"] = got["clips"] if got else 0
        pk["hours"] = round(got["seconds"] / 3600, 3) if got else 0.0
        pk.setdefault("duplicates", 0)
        pk.setdefault("windowed_files", 0)
        pk.setdefault("filtered", {})
    report["splits"] = {
        k: {"clips": v["clips"], "hours": round(v["seconds"] / 3600, 3), "packages": sorted(v["packages"])}
        for k, v in sorted(splits.items())
    }
    report["labels"] = {k: {"clips": n, **dict(label_split[k])} for k, n in labels.most_common()}
    report["clips_without_label"] = sum(1 for r in rows if not r["meta"].get("primary_label"))
    report["duplicates"] = duplicates
    report["total"] = {"clips": len(rows), "hours": round(sum(r["meta"]["duration_s"] for r in rows) / 3600, 3)}


def copyright_licences(cache: Path, package: str) -> list[str]:
    """Distinct ``License:`` names in the package's DEP-5 copyright file, when we extracted it."""
    found = list((Path(cache) / "extracted" / package).glob("usr/share/doc/*/copyright"))
    names: list[str] = []
    for f in found[:1]:
        for m in re.finditer(r"^License:\s*(\S.*)$", f.read_text(errors="replace"), re.M):
            names.append(m.group(1).strip())
    return list(dict.fromkeys(names))


def licences_md(report: dict, rows: list[dict], cache: Path) -> str:
    """Markdown listing each package's licence (and its copyright file's licences) and every
    extra-sfx clip's attribution."""
    lines = [
        "# Corpus sources and licences",
        "",
        "Built by `clap-train corpus`. Every clip's own licence is in `manifest.jsonl` "
        "(`licence`, `meta.attribution`, `meta.source_path`). Share-alike (CC-BY-SA) and GPL "
        "material is included: a model trained on it should carry this file.",
        "",
        "## Debian packages and renders",
        "",
        "| package | licence | clips kept | licences named in debian/copyright |",
        "|---|---|---|---|",
    ]
    for name, pk in sorted(report["packages"].items()):
        if name.startswith("extra-sfx:"):
            continue
        lic = "; ".join(copyright_licences(cache, name)) or "-"
        lines.append(f"| {name} | {pk.get('licence', '?')} | {pk.get('clips', 0)} | {lic} |")
    extra = [r for r in rows if r["meta"]["package"].startswith("extra-sfx:")]
    if extra:
        lines += [
            "",
            "## Curated extra sound effects (extra-sfx)",
            "",
            "Attribution per clip, as required by CC-BY / CC-BY-SA; grouped by source repository.",
            "",
        ]
        by_repo: dict[str, dict[tuple[str, str], list[str]]] = defaultdict(lambda: defaultdict(list))
        for r in extra:
            m = r["meta"]
            by_repo[m["package"][len("extra-sfx:") :]][(r.get("licence") or "?", m.get("attribution") or "?")].append(
                Path(m["source_path"]).name
            )
        for repo, groups in sorted(by_repo.items()):
            lines += [f"### {repo}", ""]
            for (lic, who), files in sorted(groups.items()):
                names = ", ".join(sorted(set(files))[:12]) + (" ..." if len(set(files)) > 12 else "")
                lines.append(f"- {who} ({lic}): {names}")
            lines.append("")
    return "\n".join(lines) + "\n"
