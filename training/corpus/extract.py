"""Fetch Debian packages into a cache and list the candidate audio files inside them.

Why not ``apt-get install``: we need the files, not an installed game; ``apt-get download`` +
``dpkg-deb --fsys-tarfile | tar -x <wildcards>`` extracts only the sound files (0ad-data is 3 GB
of mostly textures) into ``cache/extracted/<package>/`` without touching the system. A
``.done`` marker makes re-runs free. Archives inside a package (0ad's ``public.zip``, gcompris'
Qt ``.rcc`` files) are opened into ``<archive path>.d/`` next to them.

:func:`candidates` works on any extracted folder, so tests (and users with files already on
disk) can skip the network entirely.
"""

from __future__ import annotations

import glob
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from training.corpus.rcc import RccError, extract_rcc
from training.corpus.sources import AUDIO_SUFFIXES, Source, skip_reason


class FetchError(RuntimeError):
    """A package could not be downloaded or unpacked (named in the message)."""


@dataclass(frozen=True)
class Candidate:
    """One audio file found in a source, before any decoding."""

    package: str
    path: Path  # the file on disk
    rel_path: str  # relative to the package root, "/"-separated (archives appear as dirs)
    licence: str
    given: tuple[str, ...] = ()  # captions shipped with the file (manifest)
    extra_words: tuple[str, ...] = ()  # label words shipped with the file
    attribution: str = ""
    source_path: str = ""  # where the file lives in its origin (package path or repo path)
    text: str = ""  # text shipped beside the file (tuxpaint .txt), kept in meta


def _run(cmd: list[str] | str, cwd: Path | None = None, shell: bool = False) -> None:
    proc = subprocess.run(cmd, cwd=cwd, shell=shell, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FetchError(
            f"{cmd if isinstance(cmd, str) else ' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()[-400:]}"
        )


def download(package: str, cache: Path) -> Path:
    """The package's ``.deb`` in ``cache`` (downloaded with ``apt-get download`` if missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], cwd=cache)
        found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        raise FetchError(f"apt-get download {package} produced no .deb")
    return found[-1]


def unpack(source: Source, deb: Path, dest: Path) -> Path:
    """Extract the source's members (plus its copyright file) from ``deb`` into ``dest``."""
    marker = dest / ".done"
    if marker.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    pats = " ".join(f"'{p}'" for p in (*source.members, "*/copyright"))
    # tar exits 2 when a wildcard matched nothing; only a missing data tar is an error.
    cmd = (
        f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{dest}' --wildcards --no-same-owner {pats}; rc=$?; [ $rc -le 2 ]"
    )
    _run(cmd, shell=True)
    open_nested(source, dest)
    marker.write_text("ok\n")
    return dest


def open_nested(source: Source, root: Path) -> None:
    """Open zip / rcc archives named by ``source.nested`` into ``<archive>.d/`` (audio + txt)."""
    wanted = AUDIO_SUFFIXES + (".txt",)
    for pattern, kind in source.nested:
        for arch in sorted(glob.glob(str(root / pattern), recursive=True)):
            out = Path(arch + ".d")
            done = out / ".done"
            if done.exists():
                continue
            out.mkdir(parents=True, exist_ok=True)
            if kind == "zip":
                with zipfile.ZipFile(arch) as zf:
                    for info in zf.infolist():
                        if info.is_dir() or not info.filename.lower().endswith(wanted):
                            continue
                        rel = "/".join(p for p in info.filename.split("/") if p not in ("", ".", ".."))
                        if skip_reason(source, f"{Path(arch).name}/{rel}") == "not audio":
                            continue
                        target = out / rel
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(info) as src, open(target, "wb") as dst:
                            dst.write(src.read())
            elif kind == "rcc":
                try:
                    extract_rcc(arch, out, wanted)
                except RccError:
                    pass  # a resource file without a valid tree holds nothing for us
            else:
                raise ValueError(f"unknown nested archive kind {kind!r}")
            done.write_text("ok\n")


def fetch(source: Source, cache: Path) -> Path:
    """Download and unpack ``source``; return its extracted root."""
    deb = download(source.package, cache)
    return unpack(source, deb, cache / "extracted" / source.package)


def _given_text(source: Source, path: Path) -> tuple[str, ...]:
    """The first line of a sibling ``.txt`` (tuxpaint), as shipped text for the clip."""
    if not source.text_captions:
        return ()
    txt = path.with_suffix(".txt")
    if not txt.exists():
        return ()
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    first = next((ln.strip() for ln in lines if ln.strip() and "=" not in ln), "")
    return (first,) if first else ()


def candidates(source: Source, root: Path, skipped: dict[str, int] | None = None) -> list[Candidate]:
    """Audio files under ``root`` that pass the source's filters; filter reasons are counted in
    ``skipped``. Files inside opened archives appear under the archive's name (``public.zip/``)."""
    out: list[Candidate] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.lower().endswith(AUDIO_SUFFIXES):
                continue
            path = Path(dirpath) / fn
            rel = path.relative_to(root).as_posix()
            # "x/public.zip.d/audio/a.ogg" -> "x/public.zip/audio/a.ogg"
            rel = "/".join(p[:-2] if p.endswith((".zip.d", ".rcc.d")) else p for p in rel.split("/"))
            why = skip_reason(source, rel)
            if why:
                if skipped is not None:
                    skipped[why] = skipped.get(why, 0) + 1
                continue
            # Tuxpaint texts describe the picture ("A colorful rooster."), not the sound:
            # kept in meta for reference, never used as a caption.
            text = _given_text(source, path)
            out.append(
                Candidate(source.package, path, rel, source.licence, source_path=rel, text=text[0] if text else "")
            )
    return out
