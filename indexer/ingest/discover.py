"""Find audio files under the paths a user gives, streaming (a 10-million-file tree is never
held in memory at once), in a stable order (sorted within each folder)."""

from __future__ import annotations

import os
import stat as stat_flags
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                    ".au", ".caf", ".w64", ".rf64")


@dataclass(frozen=True)
class FoundFile:
    path: str          # absolute, normalised (symlinks are NOT resolved: the user's name is kept)
    size: int
    mtime_ns: int


def is_remote(path: str) -> bool:
    """A URL for fsspec (s3://, gs://, zip://...::..., http://) rather than a local path."""
    return "::" in path or ("://" in path and not path.startswith(("file://", "local://")))


def _walk_remote(url: str, wanted: tuple[str, ...]) -> Iterator[FoundFile]:
    """Files under a bucket prefix / remote folder / glob, with size and mtime from one listing."""
    import fsspec

    from indexer.ingest.shards import _mtime_ns

    chain = "::" + url.split("::", 1)[1] if "::" in url else ""
    fs, path = fsspec.core.url_to_fs(url)
    globbed = any(c in url.split("::", 1)[0].split("://", 1)[-1] for c in "*?[")
    if globbed:
        found = fs.glob(path, detail=True)
    elif fs.isdir(path):
        found = fs.find(path, detail=True)
    else:
        info = fs.info(path)
        yield FoundFile(url, int(info.get("size") or 0), _mtime_ns(info))
        return
    for name, info in sorted(found.items()):
        if info.get("type") == "file" and os.path.splitext(name)[1].lower() in wanted:
            yield FoundFile(fs.unstrip_protocol(name) + chain, int(info.get("size") or 0), _mtime_ns(info))


def normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}))


def walk(paths: Iterable[str | Path], *, extensions: Iterable[str] = AUDIO_EXTENSIONS,
         follow_symlinks: bool = False,
         on_error: Callable[[str, OSError], None] | None = None) -> Iterator[FoundFile]:
    """Files named directly (any extension) plus matching files below folders, recursively.
    fsspec URLs (``s3://bucket/prefix/``, globs, ``zip://*.wav::file.zip``) are listed remotely
    and decoded from a local copy by the worker.

    Unreadable folders are reported through ``on_error`` and skipped. With
    ``follow_symlinks`` linked folders are entered too (each real folder once, so a link loop
    cannot make the walk endless).
    """
    wanted = normalise_extensions(extensions)
    seen_dirs: set[tuple[int, int]] = set()

    def visit(folder: str) -> Iterator[FoundFile]:
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen_dirs:
                return
            seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if on_error:
                on_error(folder, exc)
            return
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    subdirs.append(entry.path)
                elif (entry.is_file(follow_symlinks=follow_symlinks)
                      and os.path.splitext(entry.name)[1].lower() in wanted):
                    st = entry.stat(follow_symlinks=True)
                    yield FoundFile(entry.path, st.st_size, st.st_mtime_ns)
            except OSError as exc:  # vanished, dangling link, permission
                if on_error:
                    on_error(entry.path, exc)
        for sub in subdirs:
            yield from visit(sub)

    for raw in paths:
        raw = os.fspath(raw)
        if is_remote(raw):   # a bucket or archive through fsspec (pip install 'clapsearch[distributed]')
            try:
                yield from _walk_remote(raw, wanted)
            except (OSError, ValueError, ImportError) as exc:
                if on_error:
                    on_error(raw, exc if isinstance(exc, OSError) else OSError(str(exc)))
            continue
        if raw.startswith(("file://", "local://")):
            raw = raw.split("://", 1)[1]
        path = os.path.abspath(raw)
        try:
            st = os.stat(path)
        except OSError as exc:
            if on_error:
                on_error(path, exc)
            continue
        if stat_flags.S_ISDIR(st.st_mode):
            yield from visit(path)
        else:
            yield FoundFile(path, st.st_size, st.st_mtime_ns)
