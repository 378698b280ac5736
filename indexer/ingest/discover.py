"""Find audio files under the paths a user gives, streaming (a 10-million-file tree is never
held in memory at once), in a stable order (sorted within each folder). The one place that
lists remote files (fsspec URLs), for ``indexer ingest`` (``walk``) and Ray (``expand_sources``).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import stat as stat_flags
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from urllib.parse import quote, unquote_to_bytes

AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
    # decoded by PyAV (indexer/audio/pyav.py): MPEG-4, ADTS AAC, Windows Media, Matroska/WebM
    ".m4a",
    ".m4b",
    ".mp4",
    ".m4v",
    ".mov",
    ".aac",
    ".wma",
    ".asf",
    ".mka",
    ".mkv",
    ".webm",
)
LIST_SUFFIXES = (".txt", ".lst", ".list")
INSTALL_HINT = "pip install 'clapsearch[distributed]'"

# File names that are not valid UTF-8. POSIX names are bytes; Python hands the bytes that are not
# UTF-8 over as lone surrogates (``surrogateescape``), which neither SQLite nor PostgreSQL nor JSON
# can hold, so one such name used to abort a whole ingest. The catalogue stores such a path as
#     NON_UTF8_PREFIX + urllib.parse.quote(os.fsencode(path), safe=SAFE)
# e.g. ``fs-bytes:/lib/bad_name_%FF%FE.wav``. The rule is lossless and reversible
# (``os_path``): '%' itself is quoted, and the prefix cannot start a real stored path (local
# paths are stored absolute, starting with '/'; remote ones carry '://'). Valid UTF-8 paths are
# stored unchanged, so existing catalogues keep their rows.
NON_UTF8_PREFIX = "fs-bytes:"
_SAFE = "/ !#$&'()*+,-.:;=@[]^_`{|}~"


@dataclass(frozen=True)
class FoundFile:
    path: str  # absolute, normalised (symlinks are NOT resolved: the user's name is kept);
    # as the catalogue stores it (``stored_path``): ``os_path`` gives the name to open
    size: int
    mtime_ns: int


def stored_path(path: str) -> str:
    """How ``path`` is written in the catalogue: itself when it is valid UTF-8, else the
    ``NON_UTF8_PREFIX`` form above (never raises)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return NON_UTF8_PREFIX + quote(os.fsencode(path), safe=_SAFE)


def os_path(stored: str) -> str:
    """The path to open for a catalogue path: ``stored_path``'s inverse (lone surrogates for the
    bytes that are not UTF-8, which ``os`` functions turn back into the original bytes)."""
    if stored.startswith(NON_UTF8_PREFIX):
        return os.fsdecode(unquote_to_bytes(stored[len(NON_UTF8_PREFIX) :]))
    return stored


def printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\xNN`` (for messages, which need not be
    reversible but must be storable)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def require(module: str) -> ModuleType:
    """Import an optional dependency of remote/distributed ingest, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"distributed ingest needs {module.split('.')[0]}: {INSTALL_HINT}") from exc


def is_remote(path: str) -> bool:
    """A URL for fsspec (s3://, gs://, zip://...::..., http://) rather than a local path."""
    return local_path(path) is None


def local_path(url: str) -> str | None:
    """The absolute local path of a plain path or file:// URL; None for any other filesystem."""
    if "::" in url:
        return None
    if "://" not in url:
        return os.path.abspath(url)
    protocol, rest = url.split("://", 1)
    return os.path.abspath(rest) if protocol in ("file", "local") else None


def is_glob(url: str) -> bool:
    return any(c in url.split("::", 1)[0].split("://", 1)[-1] for c in "*?[")


def mtime_ns(info: dict) -> int:
    """Modification time from an fsspec ``info()`` (its key and type differ per filesystem)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "date_time", "created"):
        value = info.get(key)
        try:
            value = (
                datetime(*value)
                if isinstance(value, (tuple, list))
                else datetime.fromisoformat(value.replace("Z", "+00:00"))
                if isinstance(value, str)
                else value
            )
            if isinstance(value, (int, float, datetime)):
                return int((value.timestamp() if isinstance(value, datetime) else value) * 1e9)
        except (TypeError, ValueError):
            continue
    return 0


def list_url(url: str, wanted: tuple[str, ...], *, stat_single: bool = True) -> Iterator[FoundFile]:
    """Files under a folder or glob URL (``**.wav``: ``**/*.wav``), with size and mtime from one
    listing. A URL naming one file comes back as itself, whatever its extension; unstatted with
    ``stat_single=False`` (Ray), so a missing one fails as its own row rather than the listing."""
    chain = "::" + url.split("::", 1)[1] if "::" in url else ""
    keep_path = local_path(url) is not None  # local globs stay plain paths, not file:// URLs
    fs, path = require("fsspec").core.url_to_fs(re.sub(r"(^|/)\*\*(?=[^/])", r"\1**/*", url))
    if is_glob(url):
        found = fs.glob(path, detail=True)
    elif fs.isdir(path):
        found = fs.find(path, detail=True)
    else:
        info = fs.info(path) if stat_single else {}
        yield FoundFile(url, int(info.get("size") or 0), mtime_ns(info))
        return
    for name, info in sorted(found.items()):
        if info.get("type") == "file" and os.path.splitext(name)[1].lower() in wanted:
            yield FoundFile(
                (name if keep_path else fs.unstrip_protocol(name)) + chain, int(info.get("size") or 0), mtime_ns(info)
            )


def local_copy(url: str) -> str:
    """Copy a remote file to a temporary local file (the decoder seeks); the caller deletes it."""
    suffix = os.path.splitext(url.split("::", 1)[0])[1]
    fd, tmp = tempfile.mkstemp(prefix="clapsearch-fetch-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, require("fsspec").open(url, "rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def expand_sources(sources: list[str] | str, *, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[str]:
    """Every file named by ``sources``, in order, once: files (any extension), folders and globs
    (``**`` recurses; audio extensions only), and list files (``@FILE`` or ``*.txt|.lst|.list``,
    one path or URL per line, ``#`` comments). Local files come back as absolute paths."""
    wanted = normalise_extensions(extensions)
    out: dict[str, None] = {}
    for src in [sources] if isinstance(sources, (str, Path)) else sources:
        src = str(src)
        if src.startswith("@") or src.lower().endswith(LIST_SUFFIXES):
            with require("fsspec").open(src.removeprefix("@"), "rt") as handle:
                for line in handle:
                    if (line := line.strip()) and not line.startswith("#"):
                        out[local_path(line) or line] = None
            continue
        local = local_path(src)
        if local is not None and not is_glob(src):
            if not os.path.exists(local):
                raise FileNotFoundError(f"no such file or folder: {src}")
            out.update(dict.fromkeys(f.path for f in walk([local], extensions=wanted)))
        else:
            out.update(dict.fromkeys(f.path for f in list_url(src, wanted, stat_single=False)))
    return list(out)


def normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}))


def walk(
    paths: Iterable[str | Path],
    *,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
    follow_symlinks: bool = False,
    on_error: Callable[[str, OSError], None] | None = None,
) -> Iterator[FoundFile]:
    """Files named directly (any extension) plus matching files below folders, recursively.
    fsspec URLs (``s3://bucket/prefix/``, globs, ``zip://*.wav::file.zip``) are listed remotely
    and decoded from a local copy by the worker.

    Unreadable folders are reported through ``on_error`` and skipped. With
    ``follow_symlinks`` linked folders are entered too (each real folder once, so a link loop
    cannot make the walk endless).
    """
    wanted = normalise_extensions(extensions)
    seen_dirs: set[tuple[int, int]] = set()

    def failed(path: str, exc: OSError) -> None:
        # paths and messages go into results, JSON and logs: no lone surrogates
        if on_error is not None:
            text = str(exc)
            on_error(stored_path(path), exc if printable(text) == text else type(exc)(printable(text)))

    def visit(folder: str) -> Iterator[FoundFile]:
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen_dirs:
                return
            seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            failed(folder, exc)
            return
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    subdirs.append(entry.path)
                elif (
                    entry.is_file(follow_symlinks=follow_symlinks) and os.path.splitext(entry.name)[1].lower() in wanted
                ):
                    st = entry.stat(follow_symlinks=True)
                    yield FoundFile(stored_path(entry.path), st.st_size, st.st_mtime_ns)
            except OSError as exc:  # vanished, dangling link, permission
                failed(entry.path, exc)
        for sub in subdirs:
            yield from visit(sub)

    for raw in paths:
        raw = os.fspath(raw)
        path = local_path(raw)
        if path is None:  # a bucket or archive through fsspec (pip install 'clapsearch[distributed]')
            try:
                yield from list_url(raw, wanted)
            except (OSError, ValueError, ImportError) as exc:
                failed(raw, exc if isinstance(exc, OSError) else OSError(str(exc)))
            continue
        try:
            st = os.stat(path)
        except OSError as exc:
            failed(path, exc)
            continue
        if stat_flags.S_ISDIR(st.st_mode):
            yield from visit(path)
        else:
            yield FoundFile(stored_path(path), st.st_size, st.st_mtime_ns)
