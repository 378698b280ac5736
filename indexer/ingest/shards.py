"""Vector shards: the Parquet files distributed ingest writes and the index builder imports.

Also the source expansion shared by the Ray driver and its actors (local paths, fsspec URLs,
globs and list files). The shard schema is documented in ``indexer.distributed``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np

from indexer.errors import ManifestError, ModelMismatchError
from indexer.ingest.discover import AUDIO_EXTENSIONS, normalise_extensions, walk
from indexer.models.manifest import MANIFEST_NAME
from indexer.store.catalog import FileRecord, SegmentSpec

MANIFEST = "_manifest.json"
SHARD_FORMAT = "clapsearch.vector-shards/1"
LIST_SUFFIXES = (".txt", ".lst", ".list")
INSTALL_HINT = "pip install 'clapsearch[distributed]'"
_SCALARS = ("path", "size", "mtime_ns", "content_hash", "duration_s", "format", "subtype",
            "sample_rate", "channels", "error_code", "error")


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"distributed ingest needs {module.split('.')[0]}: {INSTALL_HINT}") from exc


# ----------------------------------------------------------------------------- URLs

def _local_path(url: str) -> str | None:
    """The absolute local path of a plain path or file:// URL; None for any other filesystem."""
    if "::" in url:
        return None
    if "://" not in url:
        return os.path.abspath(url)
    protocol, rest = url.split("://", 1)
    return os.path.abspath(rest) if protocol in ("file", "local") else None


def expand_sources(sources: list[str] | str, *, extensions=AUDIO_EXTENSIONS) -> list[str]:
    """Every file named by ``sources``, in order, once: files (any extension), folders and globs
    (``**`` recurses; audio extensions only), and list files (``@FILE`` or ``*.txt|.lst|.list``,
    one path or URL per line, ``#`` comments). Local files come back as absolute paths."""
    fsspec = _require("fsspec")
    wanted = normalise_extensions(extensions)
    out: dict[str, None] = {}
    for src in [sources] if isinstance(sources, (str, Path)) else sources:
        src = str(src)
        if src.startswith("@") or src.lower().endswith(LIST_SUFFIXES):
            with fsspec.open(src.removeprefix("@"), "rt") as handle:
                for line in handle:
                    if (line := line.strip()) and not line.startswith("#"):
                        out[_local_path(line) or line] = None
            continue
        local = _local_path(src)
        globbed = any(c in src.split("::", 1)[0].split("://", 1)[-1] for c in "*?[")
        if local is not None and not globbed:
            if not os.path.exists(local):
                raise FileNotFoundError(f"no such file or folder: {src}")
            out.update(dict.fromkeys(f.path for f in walk([local], extensions=wanted)))
            continue
        fs, path = fsspec.core.url_to_fs(re.sub(r"(^|/)\*\*(?=[^/])", r"\1**/*", src))   # **.wav: **/*.wav
        if globbed:
            found = fs.glob(path, detail=True)
        elif fs.isdir(path):
            found = fs.find(path, detail=True)
        else:
            out[src] = None
            continue
        for name, info in sorted(found.items()):
            if info.get("type") == "file" and name.lower().endswith(wanted):
                url = name if local is not None else fs.unstrip_protocol(name)
                out[url + ("::" + src.split("::", 1)[1] if "::" in src else "")] = None
    return list(out)


def _mtime_ns(info: dict) -> int:
    """Modification time from an fsspec ``info()`` (its key and type differ per filesystem)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "date_time", "created"):
        value = info.get(key)
        try:
            value = (datetime(*value) if isinstance(value, (tuple, list)) else
                     datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value)
            if isinstance(value, (int, float, datetime)):
                return int((value.timestamp() if isinstance(value, datetime) else value) * 1e9)
        except (TypeError, ValueError):
            continue
    return 0


def _model_folder(model_dir: str | Path) -> Path:
    """A local folder with the model: ``model_dir`` itself, or a cached copy of a remote one."""
    local = _local_path(str(model_dir))
    if local is not None:
        return Path(local)
    fs, root = _require("fsspec").core.url_to_fs(str(model_dir))
    key = hashlib.sha1(str(model_dir).encode() + fs.cat_file(f"{root.rstrip('/')}/{MANIFEST_NAME}")).hexdigest()
    target = Path(tempfile.gettempdir()) / "clapsearch-models" / key[:16]
    if not (target / MANIFEST_NAME).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=target.parent))
        fs.get(root.rstrip("/") + "/", str(partial) + "/", recursive=True)
        try:
            os.replace(partial, target)          # another actor on this node may have won
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- shards

def shard_schema(dim: int, fingerprint: str = ""):
    import pyarrow as pa

    vector = pa.list_(pa.float32(), dim)
    segment = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("vector", vector)])
    return pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                      ("content_hash", pa.string()), ("duration_s", pa.float64()), ("format", pa.string()),
                      ("subtype", pa.string()), ("sample_rate", pa.int32()), ("channels", pa.int32()),
                      ("tags", pa.string()), ("vector", vector), ("error_code", pa.string()),
                      ("error", pa.string()), ("segments", pa.list_(segment))],
                     metadata={"clapsearch.model_fingerprint": fingerprint})


def records_table(records: list[FileRecord], schema):
    """FileRecords -> one Arrow table of ``shard_schema``."""
    import pyarrow as pa

    dim = schema.field("vector").type.list_size
    vectors = np.zeros((len(records), dim), np.float32)
    for i, r in enumerate(records):
        if r.vector is not None:
            vectors[i] = r.vector
    flat = [s for r in records for s in (r.segments or ())]
    seg_vectors = np.asarray([v for *_, v in flat], np.float32).reshape(len(flat), dim)
    seg_type = schema.field("segments").type
    structs = pa.StructArray.from_arrays(
        [pa.array([s[0] for s in flat], pa.float64()), pa.array([s[1] for s in flat], pa.float64()),
         pa.FixedSizeListArray.from_arrays(pa.array(seg_vectors.ravel()), dim)],
        fields=list(seg_type.value_type))
    offsets = np.concatenate([[0], np.cumsum([len(r.segments or ()) for r in records])]).astype(np.int32)
    columns = {name: pa.array([getattr(r, name) for r in records], schema.field(name).type) for name in _SCALARS}
    columns["tags"] = pa.array([json.dumps(r.tags) if r.tags else None for r in records], pa.string())
    columns["vector"] = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.ravel()), dim, mask=pa.array([r.vector is None for r in records]))
    columns["segments"] = pa.ListArray.from_arrays(pa.array(offsets), structs, type=seg_type,
                                                   mask=pa.array([not r.segments for r in records]))
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _matrix(array, dim: int) -> np.ndarray:
    """(n, dim) float32 of a (possibly sliced) fixed-size-list array; null rows read as zeros."""
    values = array.values.slice(array.offset * dim, len(array) * dim)
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(array), dim)


def records_from_batch(batch, dim: int) -> list[FileRecord]:
    """One Arrow record batch of a shard -> FileRecords (vectors copied out of Arrow memory)."""
    cols = {name: batch.column(name).to_pylist() for name in _SCALARS + ("tags",)}
    vcol = batch.column("vector")
    vectors, has_vector = _matrix(vcol, dim), vcol.is_valid().to_numpy(zero_copy_only=False)
    scol = batch.column("segments")
    lengths = scol.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    starts = ends = seg_vectors = None
    if splits[-1]:
        start_col, end_col, vector_col = scol.flatten().flatten()
        starts, ends = start_col.to_numpy(zero_copy_only=False), end_col.to_numpy(zero_copy_only=False)
        seg_vectors = _matrix(vector_col, dim)
    out = []
    for i in range(batch.num_rows):
        a, b = splits[i], splits[i + 1]
        segments = [(float(starts[j]), float(ends[j]), seg_vectors[j].copy()) for j in range(a, b)]
        tags = cols["tags"][i]
        out.append(FileRecord(**{name: cols[name][i] for name in _SCALARS},
                              tags=json.loads(tags) if tags else None,
                              vector=vectors[i].copy() if has_vector[i] else None, segments=segments or None))
    return out


def _out_fs(out_dir):
    fs, root = _require("fsspec").core.url_to_fs(str(out_dir))
    return fs, root.rstrip("/")


def read_shard_manifest(shard_dir) -> dict:
    fs, root = _out_fs(shard_dir)
    try:
        with fs.open(f"{root}/{MANIFEST}", "rt") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ManifestError(f"{shard_dir}: no {MANIFEST}; not a shard folder written by ray_embed") from None


def shard_manifest(manifest, variant: str, segments: SegmentSpec | None) -> dict:
    """The ``_manifest.json`` of a shard folder: which model (and segment spec) made its vectors."""
    return {"format": SHARD_FORMAT,
            "model": {"name": manifest.name, "fingerprint": manifest.fingerprint, "variant": variant,
                      "embed_dim": manifest.embed_dim},
            "segments": None if segments is None else {"seconds": segments.seconds, "hop": segments.hop}}


def _check_model(found: dict, fingerprint: str, where) -> None:
    model = found.get("model") or {}
    if model.get("fingerprint") != fingerprint:
        raise ModelMismatchError(f"{where} holds vectors of model {model.get('name')!r} "
                                 f"({model.get('fingerprint')}), not this store's model ({fingerprint})")


def _spec(found: dict) -> SegmentSpec | None:
    return SegmentSpec(**found["segments"]) if found.get("segments") else None


# ----------------------------------------------------------------------------- the Ray side
