"""Regression tests for the holes an outside probe found (issue 16): file names that are not
UTF-8, collection names made of dots, ids and lists past their bounds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.ingest.discover import NON_UTF8_PREFIX, os_path, stored_path
from indexer.ingest.pipeline import IngestOptions, run_ingest
from indexer.settings import IndexerSettings
from indexer.store import catalog, vector_rows
from indexer.store.store import Store
from tests.helpers import tone

BAD = b"bad_name_\xff\xfe.wav"


def _library(root: Path) -> tuple[Path, bytes]:
    root.mkdir(parents=True)
    sf.write(str(root / "good.wav"), tone(1.0, 16000), 16000)
    sf.write(str(root / "tmp.wav"), tone(1.0, 16000, freq=880.0), 16000)
    bad = os.fsencode(str(root)) + b"/" + BAD
    os.rename(str(root / "tmp.wav"), bad)
    return root, bad


def test_stored_path_rule_is_lossless_and_reversible():
    for raw in [b"/lib/a.wav", b"/lib/" + BAD, b"/lib/100%_\xff%FF.wav", b"/lib/caf\xc3\xa9.wav"]:
        path = os.fsdecode(raw)
        stored = stored_path(path)
        stored.encode("utf-8")  # storable anywhere
        assert os.fsencode(os_path(stored)) == raw
    assert stored_path("/lib/a.wav") == "/lib/a.wav"  # valid names are stored as they are
    assert stored_path(os.fsdecode(b"/l/" + BAD)) == NON_UTF8_PREFIX + "/l/bad_name_%FF%FE.wav"
    assert os_path("/lib/fs-bytes:x.wav") == "/lib/fs-bytes:x.wav"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_name_that_is_not_utf8_is_indexed_and_the_rest_of_the_library_too(tmp_path, backend, request):
    extra = {}
    if backend == "postgresql":
        from tests.indexer.test_store import drop_all

        url = request.getfixturevalue("postgres_url")
        drop_all(url)
        request.addfinalizer(lambda: drop_all(url))
        extra["database_url"] = url
    root, bad = _library(tmp_path / "lib")
    store = Store.open(IndexerSettings(home=tmp_path / "home", **extra))
    try:
        report = run_ingest(store, IngestOptions(paths=[str(root)], workers=1))
        assert (report.stats.embedded, report.stats.failed) == (2, 0), report.failures
        col = store.collection("default")
        paths = dict(catalog.iter_file_paths(store.db, col.id)).values()
        stored = [p for p in paths if p.startswith(NON_UTF8_PREFIX)]
        assert len(stored) == 1 and os.fsencode(os_path(stored[0])) == bad
        again = run_ingest(store, IngestOptions(paths=[str(root)], workers=1))
        assert (again.stats.skipped, again.stats.embedded) == (2, 0)
        vectors = dict(zip(*[list(a) for a in next(vector_rows.iter_vectors(store.db, col.id, "files"))]))
        assert len(vectors) == 2 and all(np.isfinite(v).all() for v in vectors.values())
    finally:
        store.close()


def _truncate_live(home: Path) -> Path:
    from indexer.store import versions

    live = versions.current_version(home / "indexes", "default", "files")
    assert live is not None
    faiss_file = live.folder / "index.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[: faiss_file.stat().st_size // 2])
    return live.folder


def test_a_truncated_live_index_is_republished_by_ingest_and_repaired_by_check(tmp_path, capsys):
    from indexer import cli
    from indexer.store.vector_index import VectorIndex

    root = tmp_path / "lib"
    root.mkdir()
    for i in range(3):
        sf.write(str(root / f"t{i}.wav"), tone(1.0, 16000, freq=300.0 + 200 * i), 16000)
    home = tmp_path / "home"
    args = ["--home", str(home)]
    assert cli.main(["ingest", str(root), *args, "-q", "--workers", "1"]) == 0
    capsys.readouterr()

    broken = _truncate_live(home)
    assert cli.main(["ingest", str(root), *args, "-q", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "unchanged" not in out.split("files index")[-1], out  # a broken index is not "unchanged"
    from indexer.store import versions

    live = versions.current_version(home / "indexes", "default", "files")
    assert live is not None and live.folder != broken and VectorIndex.load(live.folder).ntotal == 3

    _truncate_live(home)
    assert cli.main(["check", *args]) != 0
    assert cli.main(["check", "--repair", *args]) == 0, capsys.readouterr()
    assert cli.main(["check", *args]) == 0, capsys.readouterr()
    live = versions.current_version(home / "indexes", "default", "files")
    assert live is not None and VectorIndex.load(live.folder).ntotal == 3
