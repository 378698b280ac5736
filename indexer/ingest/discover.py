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


def normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}))


def walk(paths: Iterable[str | Path], *, extensions: Iterable[str] = AUDIO_EXTENSIONS,
         follow_symlinks: bool = False,
         on_error: Callable[[str, OSError], None] | None = None) -> Iterator[FoundFile]:
    """Files named directly (any extension) plus matching files below folders, recursively.

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
        path = os.path.abspath(os.fspath(raw))
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
