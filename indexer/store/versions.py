"""Index versions on disk, published atomically.

    <index_dir>/<collection>/<kind>/v000007/index.faiss   the FAISS index (ids = row ids)
                                        /index.json    plan, params, tuning (VectorIndex)
                                        /version.json  collection, model fingerprint, generation
    <index_dir>/<collection>/<kind>/CURRENT           "v000007": the live version

A new version is written into a hidden temporary folder, fsynced, renamed into place, and only
then does ``CURRENT`` switch (write aside + ``os.replace``, atomic on POSIX). A reader that
resolves ``CURRENT`` always finds a complete version; a crash at any step leaves the previous
one live, and the leftovers are swept by the next publish. The previous version is kept so a
reader that resolved ``CURRENT`` just before a switch can still open it.

``version.json`` makes a version self-describing: nothing can serve it with another model.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import CollectionBusyError, ModelMismatchError, StoreError

_VERSION = re.compile(r"^v(\d{6,})$")
KEEP_VERSIONS = 2


@dataclass(frozen=True)
class VersionInfo:
    collection: str
    collection_id: int
    kind: str
    version: int
    folder: Path
    generation: int
    model_name: str
    model_fingerprint: str
    n_vectors: int

    @classmethod
    def read(cls, folder: Path) -> VersionInfo:
        data = json.loads((folder / "version.json").read_text())
        return cls(
            data["collection"],
            int(data["collection_id"]),
            data["kind"],
            int(data["version"]),
            folder,
            int(data["generation"]),
            data["model_name"],
            data["model_fingerprint"],
            int(data["n_vectors"]),
        )

    def check_model(self, fingerprint: str, name: str = "") -> None:
        if fingerprint != self.model_fingerprint:
            raise ModelMismatchError(
                f"index {self.folder} was built with model {self.model_name!r} "
                f"({self.model_fingerprint}); it cannot serve queries of {name or 'another model'!r} "
                f"({fingerprint})"
            )


def kind_dir(index_dir: Path, collection: str, kind: str) -> Path:
    if "/" in collection or collection.startswith("."):
        raise StoreError(f"collection name {collection!r} may not contain '/' or start with '.'")
    return Path(index_dir) / collection / kind


def current_version(index_dir: Path, collection: str, kind: str) -> VersionInfo | None:
    """The live version, or None before the first publish. Retries once if the pointer moved
    and the version it named was pruned between reading the pointer and the folder."""
    base = kind_dir(index_dir, collection, kind)
    for _ in range(3):
        try:
            name = (base / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return VersionInfo.read(base / name)
        except FileNotFoundError:
            continue
    raise StoreError(f"{base}/CURRENT names a version that does not exist")


@contextmanager
def collection_lock(index_dir: Path, collection: str, *, wait: bool = False) -> Iterator[None]:
    """One writer (ingest, publish, rebuild) per collection at a time, across processes."""
    folder = Path(index_dir) / collection
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise CollectionBusyError(
                f"collection {collection!r} is being written by another process "
                f"(lock {folder / '.lock'}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_version_folder(index_dir: Path, collection: str, kind: str) -> tuple[Path, int]:
    """A fresh hidden folder to write the next version into, and that version's number."""
    base = kind_dir(index_dir, collection, kind)
    base.mkdir(parents=True, exist_ok=True)
    _sweep(base)
    numbers = [int(m.group(1)) for p in base.iterdir() if (m := _VERSION.match(p.name))]
    version = max(numbers, default=0) + 1
    tmp = base / f".tmp-v{version:06d}-{os.getpid()}"
    tmp.mkdir()
    return tmp, version


def publish_folder(
    tmp: Path,
    *,
    collection: str,
    collection_id: int,
    kind: str,
    version: int,
    generation: int,
    model_name: str,
    model_fingerprint: str,
    n_vectors: int,
) -> VersionInfo:
    """Seal ``tmp`` as version ``version`` and make it live."""
    meta = dict(
        collection=collection,
        collection_id=collection_id,
        kind=kind,
        version=version,
        generation=generation,
        model_name=model_name,
        model_fingerprint=model_fingerprint,
        n_vectors=n_vectors,
        format=1,
    )
    _write_durably(tmp / "version.json", json.dumps(meta, indent=2).encode())
    fsync_path(tmp)
    base = tmp.parent
    final = base / f"v{version:06d}"
    os.rename(tmp, final)
    fsync_path(base)
    pointer = base / f".CURRENT.{os.getpid()}"
    _write_durably(pointer, final.name.encode())
    os.replace(pointer, base / "CURRENT")
    fsync_path(base)
    _prune(base, keep=KEEP_VERSIONS)
    return VersionInfo.read(final)


def _sweep(base: Path) -> None:
    """Remove temporary folders left by a crashed publish."""
    for p in base.iterdir():
        if p.name.startswith(".tmp-v") or p.name.startswith(".CURRENT."):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _prune(base: Path, keep: int) -> None:
    current = (base / "CURRENT").read_text().strip()
    versions = sorted((p for p in base.iterdir() if _VERSION.match(p.name)), key=lambda p: p.name)
    for old in versions[:-keep]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder: so a rename or a new entry in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
