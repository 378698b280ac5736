"""Confinement when a file is served or a job runs (issue 16 #1): the disk may change between
the check at submission/ingest and the read, so both re-check; nothing outside gets out."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from service.jobs import IngestJobSpec, LocalJobQueue, execute_ingest
from service.problems import ProblemError
from tests.indexer.library import write
from tests.service.conftest import assert_problem, ingest, service_settings, write_new_file

SECRET = b"password=hunter2\n"


@pytest.fixture
def served(tmp_path, open_client):
    """A home with lib/{a.wav, sub/b.wav, garbage.wav, <not UTF-8>.wav} ingested, an outside
    folder with a secret, and a client whose allowed roots are lib."""
    lib, outside = tmp_path / "lib", tmp_path / "outside"
    (lib / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    write_new_file(lib, "a.wav")
    write_new_file(lib / "sub", "b.wav", freq=900.0)
    (lib / "garbage.wav").write_bytes(b"not audio at all" * 10)
    write_new_file(lib, "tmp.wav", freq=1500.0)
    os.rename(lib / "tmp.wav", os.fsencode(str(lib)) + b"/bad_\xff.wav")
    home = tmp_path / "home"
    stats = ingest(home, [lib], segments=False)
    assert (stats.embedded, stats.failed) == (3, 1)
    with sqlite3.connect(home / "clapsearch.db") as db:
        ids = {Path(p).name: int(i) for i, p in db.execute("SELECT id, path FROM files")}
    client = open_client(home, allowed_ingest_roots=[lib])
    return client, lib, outside, ids


def test_an_indexed_file_is_served_and_a_name_that_is_not_utf8_too(served):
    client, lib, _, ids = served
    r = client.get(f"/v1/items/{ids['a.wav']}/audio")
    assert r.status_code == 200 and r.content == (lib / "a.wav").read_bytes()
    r = client.get(f"/v1/items/{ids['bad_%FF.wav']}/audio")
    with open(os.fsencode(str(lib)) + b"/bad_\xff.wav", "rb") as handle:
        assert r.status_code == 200 and r.content == handle.read()
    assert client.get(f"/v1/items/{ids['a.wav']}/audio", headers={"Range": "bytes=0-9"}).status_code == 206
    assert client.get(f"/v1/items/{ids['a.wav']}/peaks?n=16").status_code == 200


def test_a_file_replaced_by_a_symlink_is_not_served(served):
    client, lib, outside, ids = served
    (lib / "a.wav").unlink()
    (lib / "a.wav").symlink_to(outside / "secret.txt")
    for route in ("audio", "peaks"):
        r = client.get(f"/v1/items/{ids['a.wav']}/{route}")
        assert_problem(r, 404, "item.audio_unavailable")
        assert SECRET not in r.content


def test_a_folder_swapped_for_a_symlink_out_of_the_root_is_not_served(served):
    client, lib, outside, ids = served
    shutil.move(lib / "sub", lib / "moved")
    shutil.copy(outside / "secret.txt", outside / "b.wav")
    (lib / "sub").symlink_to(outside)
    r = client.get(f"/v1/items/{ids['b.wav']}/audio")
    assert_problem(r, 404, "item.audio_unavailable")
    assert SECRET not in r.content


def test_a_failed_row_and_a_fifo_are_not_served(served):
    client, lib, _, ids = served
    assert_problem(client.get(f"/v1/items/{ids['garbage.wav']}/audio"), 404, "item.audio_unavailable")
    (lib / "a.wav").unlink()
    os.mkfifo(lib / "a.wav")  # opening it blocking would hang the request
    assert_problem(client.get(f"/v1/items/{ids['a.wav']}/audio"), 404, "item.audio_unavailable")


def test_a_job_rechecks_its_path_when_it_runs(tmp_path):
    lib, outside = tmp_path / "lib", tmp_path / "outside"
    (lib / "sub").mkdir(parents=True)
    outside.mkdir()
    write(outside / "private.wav", 1.0, sr=16_000, freq=500.0, seed=1)
    settings = service_settings(tmp_path / "home", allowed_ingest_roots=[lib])
    spec = IngestJobSpec(str(lib / "sub"))  # checked and queued while sub is a folder ...
    (lib / "sub").rmdir()
    (lib / "sub").symlink_to(outside)  # ... swapped before the job runs
    with pytest.raises(ProblemError) as caught:
        execute_ingest(spec, settings, lambda progress: None)
    assert caught.value.code == "ingest.path_not_allowed"
    queue = LocalJobQueue(settings)
    try:
        job = queue.submit(spec)
        from tests.helpers import wait_until

        done = wait_until(
            lambda: (j := queue.get(job.id)) is not None and j.status in ("finished", "failed") and j,
            60.0,
            every_s=0.05,
        )
        assert done and done.status == "failed" and done.error.startswith("ingest.path_not_allowed:")
    finally:
        queue.close()
    assert (
        not (tmp_path / "home" / "clapsearch.db").exists()
        or b"private" not in (tmp_path / "home" / "clapsearch.db").read_bytes()
    )
