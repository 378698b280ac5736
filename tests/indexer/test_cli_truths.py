"""What a user sees from `indexer` around failures and empty homes: read-only commands never
create a database, --retry-failed with nothing new publishes nothing, decoder library noise
lands in the file's error record (not the terminal), and the summary lists every failing file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer import cli
from tests.helpers import run_indexer
from tests.indexer import library


def _raw_noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Note:")]


def _library(root: Path) -> Path:
    library.write(root / "hum.wav", 1.0, sr=16_000, freq=120.0)
    library.write(root / "whistle.flac", 1.0, sr=16_000, freq=2400.0, seed=1)
    # Zeros with an .mp3 name: libmpg123 prints "Note: Illegal Audio-MPEG-Header ..." to fd 2.
    (root / "broken.mp3").write_bytes(b"\x00" * 3000)
    return root


@pytest.mark.parametrize(
    "command", [["search", "rain"], ["status"], ["status", "--errors"], ["check"], ["export", "--out", "x.parquet"]]
)
def test_read_only_commands_never_create_a_home(tmp_path, capsys, command):
    home = tmp_path / "nothing-here"
    if command[0] == "export":
        command = ["export", "--out", str(tmp_path / "x.parquet")]
    code = cli.main([*command, "--home", str(home)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error [store.missing]: nothing stored at") and str(home) in err
    assert not home.exists() and not (tmp_path / "x.parquet").exists()


def test_decoder_noise_goes_to_the_error_record_and_reruns_stay_honest(tmp_path):
    lib, home = _library(tmp_path / "lib"), tmp_path / "home"
    first = run_indexer("ingest", str(lib), "--home", str(home), "--workers", "1")
    assert first.returncode == 1, first.stderr
    assert not _raw_noise(first.stderr)  # only inside the failure's reason, never a line of its own
    assert "failed [audio.decode]" in first.stderr and "broken.mp3" in first.stderr

    status = run_indexer("status", "--errors", "--json", "--home", str(home))
    (row,) = json.loads(status.stdout)[0]["errors"]
    assert row["code"] == "audio.decode" and "the decoder said: Note: Illegal Audio-MPEG-Header" in row["error"]
    versions = (
        sorted(p.name for p in (home / "indexes" / "default" / "files").glob("v*"))
        if (home / "indexes").exists()
        else None
    )

    # A plain re-run skips the broken file as unchanged, yet the summary still names it.
    again = run_indexer("ingest", str(lib), "--home", str(home), "--workers", "1")
    assert again.returncode == 1
    assert "3 unchanged, 0 failed" in again.stdout
    assert "1 file failing" in again.stderr
    assert "failed [audio.decode]" in again.stderr and "broken.mp3" in again.stderr
    assert "(since an earlier run)" in again.stderr

    # --retry-failed on a file still broken the same way: nothing changed, nothing published.
    retry = run_indexer("ingest", str(lib), "--home", str(home), "--workers", "1", "--retry-failed")
    assert retry.returncode == 1
    assert not _raw_noise(retry.stderr)
    assert "files index v000001: unchanged" in retry.stdout, retry.stdout
    if versions is not None:
        assert sorted(p.name for p in (home / "indexes" / "default" / "files").glob("v*")) == versions
