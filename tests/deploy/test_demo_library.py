"""The demo library that ships in the repository (deploy/demo-library) and what the demo does with it.

- The folder stays small (<= 15 MB, 80-150 audio files) and every file has a CREDITS.md row with an
  allowed licence (CC0 / CC BY / CC BY-SA / public domain), and no row names a missing file; the
  page's copy of the credits (service/static/demo-credits.html) lists the same files and the page
  links to it.
- A fresh clone (``git clone`` of the committed HEAD into an empty temporary folder, nothing beside
  it) runs ``scripts/demo.sh`` with no argument: it ingests deploy/demo-library with the shipped
  model, and "dog barking" then finds a dog recording first. The setup step (``pip install`` into
  the clone's ``.venv``) is replaced by linking ``.venv`` to the environment running the tests
  (``DEMO_SETUP=0``), so the test needs no network and never changes that environment.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import REPO

LIBRARY = REPO / "deploy" / "demo-library"
CREDITS = LIBRARY / "CREDITS.md"
CREDITS_HTML = REPO / "service" / "static" / "demo-credits.html"
AUDIO_SUFFIXES = {".ogg", ".oga", ".wav", ".flac", ".mp3", ".opus"}
ALLOWED_LICENCE = re.compile(r"^(CC0\b|CC BY(-SA)?\b|Public domain\b)")


def _audio_files() -> list[Path]:
    return sorted(p for p in LIBRARY.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def _credit_rows() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    lines = CREDITS.read_text(encoding="utf-8").splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| File |"))
    names = [c.strip() for c in lines[header].strip("|").split("|")]
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        row = dict(zip(names, cells))
        name = row["File"].strip("`")
        assert name not in rows, f"two CREDITS rows for {name}"
        rows[name] = row
    return rows


def test_demo_library_is_small_and_spans_enough_files():
    files = _audio_files()
    size = sum(p.stat().st_size for p in LIBRARY.rglob("*") if p.is_file())
    assert 80 <= len(files) <= 150, len(files)
    assert size <= 15 * 1024 * 1024, f"{size / 1e6:.1f} MB"
    # every name says what the sound is: lower-case words, no game prefixes left over
    for p in files:
        assert re.fullmatch(r"[a-z][a-z0-9_]*\.ogg", p.name), p.name
        assert not p.name.startswith(("petz_", "default_", "doors_", "sfx_")), p.name


def test_every_file_has_a_credits_row_with_an_allowed_licence():
    rows = _credit_rows()
    files = {p.relative_to(LIBRARY).as_posix() for p in _audio_files()}
    assert files - rows.keys() == set(), "files without a CREDITS row"
    assert rows.keys() - files == set(), "CREDITS rows without a file"
    for name, row in rows.items():
        assert ALLOWED_LICENCE.match(row["Licence"]), (name, row["Licence"])
        assert row["What it is"] and row["Source"] and row["Author"], name
        if not row["Licence"].startswith(("CC0", "Public domain")):
            assert row["Author"] not in {"", "-", "unknown"}, f"{name}: {row['Licence']} needs an author"


def test_page_links_the_same_credits():
    page = (REPO / "service" / "static" / "index.html").read_text(encoding="utf-8")
    assert 'href="/static/demo-credits.html"' in page
    listed = re.findall(r"<tr><td>([^<]+)</td>", CREDITS_HTML.read_text(encoding="utf-8"))
    assert [html.unescape(n) for n in listed] == list(_credit_rows()), (
        "service/static/demo-credits.html is out of date: rerun scripts/build_demo_library.py"
    )


def test_demo_library_is_committed_and_not_ignored():
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "deploy/demo-library"], capture_output=True, text=True, check=True
    ).stdout.split()
    if not tracked:
        pytest.skip("deploy/demo-library is not committed yet")
    assert {f"deploy/demo-library/{p.name}" for p in _audio_files()} <= set(tracked)
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", *tracked], capture_output=True, text=True
    ).stdout.split()
    assert ignored == []


def _search(clone: Path, env: dict[str, str], query: str) -> list[str]:
    out = subprocess.run(
        [
            str(clone / ".venv" / "bin" / "indexer"),
            "search",
            query,
            "--model",
            "models/clapsearch-sfx-v2",
            "--home",
            "runs/demo-home",
            "--top",
            "3",
            "--json",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [r["path"] for r in json.loads(out.stdout)["items"]]


@pytest.mark.slow
def test_fresh_clone_demo_finds_a_dog_for_dog_barking(tmp_path):
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", head, "deploy/demo-library"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not any(n.endswith(".ogg") for n in listed):
        pytest.skip("deploy/demo-library is not in the committed HEAD yet")
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "indexer").exists():
        pytest.skip(f"no indexer entry point beside {sys.executable}")
    clone = tmp_path / "clapsearch"  # alone in its temporary folder: no ../shared beside it
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "--detach", head], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clapsearch"]
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAPSEARCH_")}
    env.update(PYTHONPATH=str(clone), DEMO_SETUP="0", DEMO_SERVE="0", PYTHONDONTWRITEBYTECODE="1")
    demo = subprocess.run(["bash", "scripts/demo.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "deploy/demo-library" in demo.stdout
    assert "SYNTHETIC" not in demo.stdout + demo.stderr

    # the clone's own code answered (not the checkout the tests run from)
    probe = subprocess.run(
        [sys.executable, "-c", "import indexer; print(indexer.__file__)"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(probe).resolve().is_relative_to(clone.resolve()), probe

    top = _search(clone, env, "dog barking")
    first = Path(top[0])
    assert first.resolve().parent == (clone / "deploy" / "demo-library").resolve(), top
    assert first.name.startswith("dog_"), f'"dog barking" found {[Path(p).name for p in top]} first'
    # two more queries with one clear answer each in the library
    assert Path(_search(clone, env, "a baby crying")[0]).name == "baby_crying.ogg"
    assert Path(_search(clone, env, "glass breaking")[0]).name.startswith("glass_breaking")
    shutil.rmtree(clone / "runs", ignore_errors=True)
