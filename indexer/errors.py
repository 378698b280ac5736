"""One exception tree for the whole core; the service maps it to problem+json once.

    ClapSearchError
    ├── ModelError                  a model folder is missing, malformed or incompatible
    │   ├── ManifestError           manifest.json is absent or does not validate
    │   ├── ModelMismatchError      vectors/indexes built with another model
    │   └── ModelRuntimeError       ONNX Runtime failed while running the model
    ├── AudioError                  one input file could not become a vector (``.path``, ``.reason``)
    │   ├── AudioDecodeError        unreadable, truncated or not audio at all
    │   ├── UnsupportedFormatError  a container/codec we do not decode
    │   ├── EmptyAudioError         zero samples, or nothing left after decoding
    │   ├── InvalidSamplesError     NaN/Inf samples, absurd sample rate or channel count
    │   ├── AudioTooLongError       longer than the configured limit
    │   ├── AudioTooLargeError      decoding it ran out of memory
    │   ├── DecoderCrashedError     the decoder process died on it (ingest)
    │   ├── DecodeTimeoutError      the decoder hung on it past the deadline (ingest)
    │   └── FileError               the file itself could not be read
    │       ├── FileMissingError    it vanished between listing and reading
    │       ├── FilePermissionError  no permission to read it
    │       └── FileFetchError      a remote (object store) file could not be fetched
    ├── TextError                   unusable query text
    │   ├── EmptyTextError          empty, or only white space
    │   └── TextTooLongError        longer than the query limit
    ├── QueryError                  a search asked for what this model or request cannot give
    │   ├── RelevanceUnavailableError  min_relevance without a text query and a calibrated model
    │   ├── FilterLimitError        more filter values (tags, formats) or longer ones than a query may carry
    │   ├── FilterValueError        a filter value that means nothing: an unknown key name, bpm_min > bpm_max
    │   └── SearchModeError         a search mode the query cannot run in (mode=text for an audio query)
    ├── ConfigError                 a command's arguments or configuration file are invalid
    │   └── AnalysisUnavailableError  tempo/key analysis asked for without librosa (the ``analysis`` extra)
    ├── DataError                   training data cannot be used (clap-train)
    │   └── DataManifestError       a training data listing is unusable (``.issue``: where and why)
    ├── EvaluationError             an evaluation cannot run on the given data (clap-train eval)
    ├── ItemError                   an indexed item cannot serve as asked
    │   ├── ItemNotFoundError       no item has that id
    │   ├── ItemNotIndexedError     the item failed to ingest, so it has no vector
    │   └── ItemAudioUnavailableError  the item's file is not on this machine's disk
    └── StoreError                  the metadata database or an index cannot be used
        ├── CollectionNotFoundError no collection of that name
        ├── CollectionNameError     a collection name outside the one rule (``catalog.check_collection_name``)
        ├── StoreMissingError       a read-only command met a home with no database (none is created)
        ├── CollectionBusyError     another ingest holds the collection's lock
        ├── VectorIndexError        a FAISS index cannot be built, loaded or changed as asked
        ├── CorruptVectorError      a stored vector is unreadable (`indexer check --repair` marks it)
        ├── DatabaseUnavailableError  the metadata database refused or dropped the connection
        └── StorageIOError          the disk under the data folder failed (full, read-only...)

Every error carries a stable dotted ``code`` string (``audio.decode`` ...) for API clients: its
family, the part before the last dot, names the branch of the tree (``audio``, ``store`` ...), and a
branch's own class has a code of that family too (``StoreError``: ``store.unavailable``). The CLIs
print it (``error [store.busy]: ...``) and exit with ``exit_code(exc.code)``. ``translate`` is the one
place that says what a foreign exception (OS, libsndfile, SQLAlchemy, ONNX Runtime) means.
docs/errors.md lists every code (``scripts/errors_reference.py``).
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ClapSearchError(Exception):
    code = "core.error"


class ModelError(ClapSearchError):
    code = "model.invalid"


class ManifestError(ModelError):
    code = "model.manifest"


class ModelMismatchError(ModelError):
    code = "model.mismatch"


class ModelRuntimeError(ModelError):
    code = "model.runtime"


class AudioError(ClapSearchError):
    """A single input could not be embedded; names the file and the reason."""

    code = "audio.unusable"

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        where = self.path if self.path is not None else "<audio array>"
        super().__init__(f"{where}: {reason}")


class AudioDecodeError(AudioError):
    code = "audio.decode"


class UnsupportedFormatError(AudioError):
    code = "audio.unsupported_format"


class EmptyAudioError(AudioError):
    code = "audio.empty"


class InvalidSamplesError(AudioError):
    code = "audio.invalid_samples"


class AudioTooLongError(AudioError):
    code = "audio.too_long"


class AudioTooLargeError(AudioError):
    code = "audio.too_large"


class DecoderCrashedError(AudioError):
    code = "audio.decoder_crashed"


class DecodeTimeoutError(AudioError):
    code = "audio.timeout"


class FileError(AudioError):
    code = "file.unreadable"


class FileMissingError(FileError):
    code = "file.missing"


class FilePermissionError(FileError):
    code = "file.permission"


class FileFetchError(FileError):
    code = "file.fetch"


class TextError(ClapSearchError):
    code = "text.invalid"


class EmptyTextError(TextError):
    code = "text.empty"


class TextTooLongError(TextError):
    code = "text.too_long"


class QueryError(ClapSearchError):
    code = "request.invalid"


class RelevanceUnavailableError(QueryError):
    code = "request.min_relevance"


class ConfigError(ClapSearchError):
    code = "config.invalid"


class DataError(ClapSearchError):
    code = "data.invalid"


class DataManifestError(DataError):
    code = "data.manifest"

    def __init__(self, message: str, issue: object | None = None):
        self.issue = issue  # training.data.records.ManifestIssue: source, line, reason
        super().__init__(message)


class EvaluationError(ClapSearchError):
    code = "evaluation.invalid"


class FilterLimitError(QueryError):
    code = "request.filters"


class FilterValueError(QueryError):
    code = "request.filter_value"


class SearchModeError(QueryError):
    code = "request.mode"


class AnalysisUnavailableError(ConfigError):
    code = "config.analysis_unavailable"


class ItemError(ClapSearchError):
    code = "item.unusable"


class ItemNotFoundError(ItemError):
    code = "item.not_found"


class ItemNotIndexedError(ItemError):
    code = "item.not_indexed"


class ItemAudioUnavailableError(ItemError):
    code = "item.audio_unavailable"


class StoreError(ClapSearchError):
    code = "store.unavailable"


class CollectionNotFoundError(StoreError):
    code = "store.collection_not_found"


class StoreMissingError(StoreError):
    """A read-only command (search, status, check, export) met a home with no database: it says
    so instead of creating an empty one there."""

    code = "store.missing"


class CollectionNameError(StoreError):
    code = "store.collection_name"


class CollectionBusyError(StoreError):
    code = "store.busy"


class VectorIndexError(StoreError):
    code = "store.index"


class CorruptVectorError(StoreError):
    code = "store.corrupt_vector"


class DatabaseUnavailableError(StoreError):
    code = "store.database"


class StorageIOError(StoreError):
    code = "store.io"


# Exit codes of the command-line tools (`indexer`, `clap-train`) by code or code family, the most
# specific first; EXIT_ERROR for every other error. 1 is kept for "ran, but some files failed",
# 130 for Ctrl-C.
EXIT_ERROR = 2
EXIT_CODES: dict[str, int] = {}


def report_error(exc: ClapSearchError) -> int:
    """Print an error as every CLI does (``error [code]: message`` on stderr); its exit code."""
    print(f"error [{exc.code}]: {exc}", file=sys.stderr)
    return exit_code(exc.code)


def by_family(code: str, table: Mapping[str, T], default: T) -> T:
    """``table``'s entry for ``code``, else for its family (``audio.decode`` -> ``audio``), else
    ``default``: how exit codes and HTTP statuses are looked up alike."""
    while code:
        if code in table:
            return table[code]
        code = code.rpartition(".")[0]
    return default


def exit_code(code: str) -> int:
    return by_family(code, EXIT_CODES, EXIT_ERROR)


# FAISS prefixes its messages with its C++ source location ("Error in faiss::read_index_up(...) at
# /project/faiss/impl/index_read.cpp:3251: "), sometimes followed by the failed assertion.
_LIBRARY_LOCATION = re.compile(r"Error in .*? at \S+:\d+: (?:Error: '.*?' failed: )?")
# An absolute path: a "/" that does not continue a word, a URL ("s3://") or a relative path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/*~-])/[^\s'\"`:,;()\[\]<>]*")


def public_text(text: str) -> str:
    """``text`` fit for someone outside the server: absolute paths shortened to their last part (the
    file name), library source locations dropped. The full text stays in the server's logs."""
    text = _LIBRARY_LOCATION.sub("", text)
    return _ABSOLUTE_PATH.sub(lambda m: os.path.basename(m.group(0).rstrip("/")) or "/", text)


_DATABASE_DOWN = {"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"}


def translate(exc: BaseException) -> ClapSearchError | None:
    """The core error a foreign exception means, or None when it means a bug (let it surface).

    Matched by the raising library's class names, so this module imports none of them."""
    if isinstance(exc, ClapSearchError):
        return exc
    module = type(exc).__module__ or ""
    name = type(exc).__name__
    if module.startswith("sqlalchemy") and name in _DATABASE_DOWN:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        return DatabaseUnavailableError(f"the metadata database is unavailable: {first}")
    if module.startswith("onnxruntime"):
        return ModelRuntimeError(f"ONNX Runtime failed: {exc}")
    soundfile = sys.modules.get("soundfile")
    if soundfile is not None and isinstance(exc, getattr(soundfile, "LibsndfileError", ())):
        return AudioDecodeError(None, str(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO):
        return StorageIOError(f"{exc.filename or 'storage'}: {exc.strerror}")
    return None
