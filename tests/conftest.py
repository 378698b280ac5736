"""Shared fixtures.

Real PostgreSQL and Redis: found through CLAPSEARCH_TEST_POSTGRES_URL / CLAPSEARCH_TEST_REDIS_URL
(defaults: the local servers on 127.0.0.1). Where they are unreachable the tests that need them
skip with the reason, except when CLAPSEARCH_REQUIRE_SERVICES=1 (set by .ci/run): then they fail,
so CI always exercises the real components.

Golden fixtures from laion_clap live in ``../shared/data/laion-golden`` beside the checkout.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.helpers import redis_error

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("CLAPSEARCH_GOLDEN_DIR", REPO.parent / "shared" / "data" / "laion-golden"))


def _hypothesis_profiles() -> None:
    """Property tests: a bounded number of examples in CI, many more in the long mode
    (``CLAPSEARCH_TEST_LONG=1``, docs/reliability.md); no deadline (a loaded CI machine is slow)."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the property tests skip themselves
        return
    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=quiet, derandomize=True)
    settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=quiet)
    settings.load_profile("long" if os.environ.get("CLAPSEARCH_TEST_LONG") == "1" else "ci")


_hypothesis_profiles()


# What the test run itself is told through the environment; every other CLAPSEARCH_* variable is
# a developer's or a machine's setting and must not reach the code under test.
TEST_VARIABLES = ("CLAPSEARCH_TEST_", "CLAPSEARCH_REQUIRE_SERVICES", "CLAPSEARCH_GOLDEN_DIR")


@pytest.fixture(scope="session", autouse=True)
def settings_ignore_the_environment():
    """Settings in tests come from their arguments and the defaults only (a test that wants a
    variable sets it with ``monkeypatch.setenv``)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("CLAPSEARCH_") and not name.startswith(TEST_VARIABLES):
                patch.delenv(name)
        yield


def _unavailable(what: str, reason: str):
    from tests.helpers import unavailable

    unavailable(f"{what} unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("CLAPSEARCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver/connection failure means "not available here"
        _unavailable("PostgreSQL", f"{url}: {exc.__class__.__name__}: {exc}".splitlines()[0])
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("CLAPSEARCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    exc = redis_error(url)
    if exc is not None:
        _unavailable("Redis", f"{url}: {exc.__class__.__name__}: {exc}")
    return url


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN / "index.json").is_file():
        pytest.skip(f"laion golden fixtures not found at {GOLDEN} (set CLAPSEARCH_GOLDEN_DIR)")
    return GOLDEN


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A real model folder (fused tiny random CLAP, fp32 + int8) exported by our own pipeline."""
    pytest.importorskip("torch")
    from tests.factories import save_hf_folder, tiny_clap_model
    from training.convert.hf import load_hf_folder
    from training.export import write_model_folder

    hf = save_hf_folder(tiny_clap_model(True, vocab_size=400, seed=21), tmp_path_factory.mktemp("hf-tiny"))
    out = tmp_path_factory.mktemp("models") / "tiny-fused"
    write_model_folder(load_hf_folder(hf), out, variants=("fp32", "int8"))
    return out


@pytest.fixture
def pg_db(postgres_url):
    """A fresh PostgreSQL database for one test, dropped after it."""
    import sqlalchemy as sa

    base = sa.engine.make_url(postgres_url)
    name = f"clapsearch_ready_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
