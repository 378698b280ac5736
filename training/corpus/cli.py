"""``clap-train corpus``: build the captioned, de-duplicated, package-split training corpus.

    clap-train corpus --out data/corpus --extra ../shared/data/extra-sfx
    python -m training.corpus.cli --out data/corpus --packages minetest-data,widelands-data

Writes ``OUT/manifest.jsonl`` (our JSONL manifest), ``OUT/report.json`` and ``OUT/LICENCES.md``;
re-running reuses the package cache, renders, decode results and written FLACs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from indexer.errors import ConfigError, report_error
from training.corpus.build import DEFAULT_HELDOUT, DEFAULT_VAL, BuildConfig, build


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clap-train corpus", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="corpus folder to write")
    p.add_argument(
        "--packages",
        help="comma-separated packages to use (default: all sources, "
        "fluid-soundfont-gm and every extra-sfx repository)",
    )
    p.add_argument("--skip-packages", default="", help="comma-separated packages to leave out")
    p.add_argument("--extra", type=Path, help="extra-sfx folder with manifest.csv")
    p.add_argument(
        "--cache", type=Path, default=Path("data/deb-cache"), help="where .deb files, extractions and renders are kept"
    )
    p.add_argument(
        "--heldout",
        default=",".join(DEFAULT_HELDOUT),
        help="packages whose clips form the 'heldout' split (extra-sfx repositories as extra-sfx:OWNER/REPO)",
    )
    p.add_argument("--val", default=",".join(DEFAULT_VAL), help="packages for the 'val' split")
    p.add_argument("--no-fluidsynth", action="store_true", help="skip the GM soundfont renders")
    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
    p.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="PACKAGE=DIR",
        help="use an already-extracted folder for PACKAGE instead of apt",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    heldout, val = _names(args.heldout), _names(args.val)
    both = set(heldout) & set(val)
    if both:
        return report_error(ConfigError(f"in both --heldout and --val: {sorted(both)}"))
    roots = {}
    for item in args.root:
        name, _, folder = item.partition("=")
        roots[name] = Path(folder)
    cfg = BuildConfig(
        out=args.out,
        cache=args.cache,
        packages=_names(args.packages) or None,
        skip_packages=_names(args.skip_packages),
        extra=args.extra,
        heldout=heldout,
        val=val,
        fluidsynth=not args.no_fluidsynth,
        workers=args.workers,
        roots=roots,
        progress=not args.no_progress,
    )
    report = build(cfg)
    print(
        json.dumps(
            {
                "total": report["total"],
                "splits": report["splits"],
                "dropped_packages": {k: v["dropped"] for k, v in report["packages"].items() if "dropped" in v},
                "seconds": report["seconds"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
