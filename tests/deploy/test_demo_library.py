"""The demo library that ships in the repository (deploy/demo-library) and what the demo does with it.

- The folder stays small (<= 15 MB, 80-150 audio files) and every file has a CREDITS.md row with an
  allowed licence (CC0 / CC BY / CC BY-SA / public domain), and no row names a missing file; the
  page's copy of the credits (service/static/demo-credits.html) lists the same files and the page
  links to it.
- A fresh clone (``git clone`` of the committed HEAD into an empty temporary folder, nothing beside
  it) runs ``scripts/demo.sh`` with no argument: it ingests deploy/demo-library with the shipped
  model, and "dog barking" then finds a dog recording first. Two variants:
  - offline (seconds): the setup step (``pip install`` into the clone's ``.venv``) is replaced by
    linking ``.venv`` to the environment running the tests (``DEMO_SETUP=0``), so it needs no
    network and never changes that environment;
  - with setup (minutes, ``slow``): the demo's own ``scripts/setup.sh runtime`` creates the clone's
    ``.venv`` and installs the torch-free runtime from PyPI (pip's cache and configuration as they
    are on the machine), then ingests and searches; bounded by ``DEMO_SETUP_TIMEOUT_S`` (900 s) and
    skipped, with the reason, only when PyPI cannot be reached.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy import REPO
from tests.helpers import run_captured

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
    tracked = run_captured(["git", "-C", str(REPO), "ls-files", "deploy/demo-library"], check=True).stdout.split()
    if not tracked:
        pytest.skip("deploy/demo-library is not committed yet")
    assert {f"deploy/demo-library/{p.name}" for p in _audio_files()} <= set(tracked)
    ignored = run_captured(["git", "-C", str(REPO), "check-ignore", "--no-index", *tracked]).stdout.split()
    assert ignored == []


def _search(clone: Path, env: dict[str, str], query: str) -> list[str]:
    # by sound alone: the demo's file names say what each sound is, and hybrid search reads them
    options = "--model models/clapsearch-sfx-v2 --home runs/demo-home --top 3 --json --mode audio".split()
    out = run_captured(
        [str(clone / ".venv" / "bin" / "indexer"), "search", query, *options], cwd=clone, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [r["path"] for r in json.loads(out.stdout)["items"]]


def _fresh_clone(tmp_path: Path) -> Path:
    """The committed HEAD cloned alone into ``tmp_path`` (no ../shared or anything else beside it)."""
    head = run_captured(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True).stdout.strip()
    listed = run_captured(
        ["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", head, "deploy/demo-library"], check=True
    ).stdout.split()
    if not any(n.endswith(".ogg") for n in listed):
        pytest.skip("deploy/demo-library is not in the committed HEAD yet")
    clone = tmp_path / "clapsearch"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "--detach", head], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clapsearch"]
    return clone


def _demo_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAPSEARCH_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(DEMO_SERVE="0", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _run_demo(clone: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    demo = run_captured(["bash", "scripts/demo.sh"], cwd=clone, env=env, timeout=timeout)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "deploy/demo-library" in demo.stdout
    assert "SYNTHETIC" not in demo.stdout + demo.stderr
    return demo


def _finds_the_demo_sounds(clone: Path, env: dict[str, str]) -> None:
    top = _search(clone, env, "dog barking")
    first = Path(top[0])
    assert first.resolve().parent == (clone / "deploy" / "demo-library").resolve(), top
    assert first.name.startswith("dog_"), f'"dog barking" found {[Path(p).name for p in top]} first'
    # two more queries with one clear answer each in the library
    assert Path(_search(clone, env, "a baby crying")[0]).name == "baby_crying.ogg"
    assert Path(_search(clone, env, "glass breaking")[0]).name.startswith("glass_breaking")


def _imports_from(python: str | Path, clone: Path, env: dict[str, str]) -> Path:
    """Where ``python`` run in the clone imports ``indexer`` from."""
    probe = run_captured([str(python), "-c", "import indexer; print(indexer.__file__)"], cwd=clone, env=env, check=True)
    return Path(probe.stdout.strip()).resolve()


@pytest.mark.slow
def test_fresh_clone_demo_finds_a_dog_for_dog_barking(tmp_path):
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "indexer").exists():
        pytest.skip(f"no indexer entry point beside {sys.executable}")
    clone = _fresh_clone(tmp_path)
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = _demo_env(PYTHONPATH=str(clone), DEMO_SETUP="0")
    _run_demo(clone, env, timeout=600)
    # the clone's own code answered (not the checkout the tests run from)
    assert _imports_from(sys.executable, clone, env).is_relative_to(clone.resolve())
    _finds_the_demo_sounds(clone, env)
    shutil.rmtree(clone / "runs", ignore_errors=True)


def _pypi_unreachable() -> str | None:
    """Why the package index cannot be reached (None: it can). The index pip would ask: the
    PIP_INDEX_URL in force, else PyPI."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(index, timeout=15) as answer:
            answer.read(1)
    except (urllib.error.URLError, OSError) as exc:
        return f"{index} unreachable ({exc})"
    return None


def _size_mb(folder: Path) -> float:
    total = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


@pytest.mark.slow
def test_fresh_clone_demo_sets_up_ingests_and_finds_a_dog(tmp_path):
    """The demo as a new user runs it: its own setup step really installs the runtime."""
    unreachable = _pypi_unreachable()
    if unreachable:
        pytest.skip(f"the demo's setup installs from PyPI: {unreachable}")
    clone = _fresh_clone(tmp_path)
    # the interpreter the tests run on stands in for the machine's python3 (>= 3.10); the clone's
    # .venv is created from it by scripts/setup.sh, not shared with it
    env = _demo_env(PYTHON=sys.executable)
    started = time.monotonic()
    demo = _run_demo(clone, env, timeout=float(os.environ.get("DEMO_SETUP_TIMEOUT_S", "900")))
    took = time.monotonic() - started
    assert "installing the torch-free runtime" in demo.stdout
    python = clone / ".venv" / "bin" / "python"
    assert python.is_file() and not (clone / ".venv").is_symlink()
    assert _imports_from(python, clone, _demo_env()).is_relative_to(clone.resolve())
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, env=_demo_env())
    assert no_torch.returncode != 0, "the demo's runtime install must not bring torch"
    _finds_the_demo_sounds(clone, _demo_env())
    print(f"demo with setup on a fresh clone: {took:.0f} s, .venv {_size_mb(clone / '.venv'):.0f} MB")
