"""docs/configuration.md is generated from the settings classes and must not go stale."""

from __future__ import annotations

import sys

from tests.deploy import REPO, known_settings
from tests.helpers import run_captured

DOC = REPO / "docs" / "configuration.md"
SCRIPT = REPO / "scripts" / "settings_reference.py"


def test_configuration_reference_is_current():
    result = run_captured(
        [sys.executable, str(SCRIPT), "--check", str(DOC)],
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "CLAPSEARCH_API_KEYS": "not-read"},
    )
    assert result.returncode == 0, (
        f"docs/configuration.md is stale; regenerate it: python scripts/settings_reference.py > docs/configuration.md\n"
        f"{result.stderr[-4000:]}"
    )


def test_every_setting_is_documented():
    text = DOC.read_text()
    missing = sorted(name for name in known_settings() if f"`{name}`" not in text)
    assert not missing, missing


def test_output_does_not_depend_on_the_environment(monkeypatch):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import settings_reference
    finally:
        sys.path.remove(str(SCRIPT.parent))
    before = settings_reference.render()
    monkeypatch.setenv("CLAPSEARCH_INDEX_MEMORY_GB", "64")
    monkeypatch.setenv("XDG_DATA_HOME", "/elsewhere")
    monkeypatch.setenv("HOME", "/nobody")
    assert settings_reference.render() == before
