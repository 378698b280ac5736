"""One closed error set: foreign exceptions translated in one place, codes and exit codes from
one table, and docs/errors.md generated from them."""

from __future__ import annotations

import errno
import io
import re
import sys

import pytest

from indexer import errors
from tests.helpers import run_captured

REPO = errors.Path(__file__).resolve().parents[2]


def _raised(fn):
    try:
        fn()
    except Exception as exc:  # the real library's exception, whatever it is
        return exc
    raise AssertionError("expected an exception")


def test_a_refused_database_connection_means_store_database():
    import sqlalchemy as sa

    engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    known = errors.translate(_raised(engine.connect))
    assert isinstance(known, errors.DatabaseUnavailableError) and known.code == "store.database"
    assert "unavailable" in str(known)


def test_libsndfile_onnxruntime_and_disk_failures_get_their_codes():
    import onnxruntime as ort
    import soundfile as sf

    decode = errors.translate(_raised(lambda: sf.read(io.BytesIO(b"not audio" * 20))))
    assert isinstance(decode, errors.AudioDecodeError)
    runtime = errors.translate(_raised(lambda: ort.InferenceSession(b"not a model")))
    assert isinstance(runtime, errors.ModelRuntimeError) and runtime.code == "model.runtime"
    full = errors.translate(OSError(errno.ENOSPC, "No space left on device", "/data/index"))
    assert isinstance(full, errors.StorageIOError) and "/data/index" in str(full)


def test_bugs_are_not_translated():
    assert errors.translate(KeyError("x")) is None
    assert errors.translate(ZeroDivisionError()) is None
    assert errors.translate(FileNotFoundError(errno.ENOENT, "gone")) is None
    core = errors.TextError("empty")
    assert errors.translate(core) is core


def test_exit_codes_come_from_one_table(monkeypatch):
    assert errors.exit_code(errors.CollectionBusyError("x").code) == 2
    monkeypatch.setitem(errors.EXIT_CODES, "store", 7)  # a family
    assert errors.exit_code(errors.CollectionBusyError("x").code) == 7
    assert errors.exit_code(errors.TextError("x").code) == 2


def test_every_code_is_unique_and_documented():
    codes = [cls.code for cls in _all_classes(errors.ClapSearchError)]
    assert len(codes) == len(set(codes)), sorted(codes)
    result = run_captured(
        [sys.executable, "scripts/errors_reference.py", "--check", "docs/errors.md"], cwd=REPO, timeout=120
    )
    assert result.returncode == 0, (
        "docs/errors.md is stale: python scripts/errors_reference.py > docs/errors.md\n" + result.stderr[-3000:]
    )


def test_every_core_code_has_an_http_answer():
    from service.problems import PROBLEMS, ProblemError, core_status

    for cls in _all_classes(errors.ClapSearchError):
        if cls is not errors.ClapSearchError:  # matched by its code or its family's
            assert core_status(cls.code) != PROBLEMS["service.internal"], cls
    with pytest.raises(KeyError):
        ProblemError("made.up")


# family.name, both parts lower-case words: what docs/errors.md promises clients can switch on
DOTTED = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")


def test_every_code_is_dotted():
    """Every code a client can meet: each core class's, each row of the HTTP table, what the
    server stack's own statuses map to, and every code a ProblemError is raised with in the
    service's source (a typo there would only fail when that line runs)."""
    from service import problems

    codes = {f"{cls.__name__}: {cls.code}": cls.code for cls in _all_classes(errors.ClapSearchError)}
    codes.update({f"PROBLEMS: {code}": code for code in problems.PROBLEMS})
    codes.update({f"HTTP {status}: {code}": code for status, code in problems.HTTP_CODES.items()})
    raised = set()
    for source in sorted((REPO / "service").rglob("*.py")):
        for code in re.findall(r"ProblemError\(\s*[\"']([^\"']*)[\"']", source.read_text(encoding="utf-8")):
            raised.add(code)
            codes[f"{source.relative_to(REPO)}: {code}"] = code
    assert {"service.busy", "auth.rate_limited", "request.offset"} <= raised  # the scan sees the raisers
    undotted = sorted(where for where, code in codes.items() if not DOTTED.fullmatch(code))
    assert undotted == [], f"codes without a dot: {undotted}"
    assert raised <= problems.PROBLEMS.keys(), sorted(raised - problems.PROBLEMS.keys())
    # families are prefixes, never codes: no answer carries one, every core code falls under one
    assert not problems.FAMILIES.keys() & problems.PROBLEMS.keys()
    for cls in _all_classes(errors.ClapSearchError):
        if cls is not errors.ClapSearchError:
            assert cls.code in problems.PROBLEMS or cls.code.rpartition(".")[0] in problems.FAMILIES, cls


def _all_classes(root):
    out = [root]
    for sub in root.__subclasses__():
        out += _all_classes(sub)
    return out
