"""Tests of the deployment files: Dockerfile, docker-compose.yml, deploy/, requirements/ locks.

No Docker engine runs here, so the files are checked by the tools that validate them offline
(docker-compose from Debian, hadolint, kubernetes-validate and check-jsonschema from PyPI,
promtool from Debian's prometheus package) and by tests that read them. A missing tool skips
its test with the reason, except when CLAPSEARCH_REQUIRE_SERVICES=1 (CI): then it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"


def missing_tool(what: str, how: str):
    message = f"{what} not available ({how})"
    if os.environ.get("CLAPSEARCH_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (CLAPSEARCH_REQUIRE_SERVICES=1: CI must run this check)")
    pytest.skip(message)


def find_tool(name: str, how: str) -> str:
    """A command on PATH or beside the running interpreter (a venv's bin/, not always on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        missing_tool(name, how)
    return found


def load_yaml_documents(path: Path) -> list:
    yaml = pytest.importorskip("yaml")
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def compose() -> dict:
    return load_yaml_documents(REPO / "docker-compose.yml")[0]


_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate_defaults(value: str) -> str:
    """``${VAR:-default}`` -> ``default`` (what docker compose uses when VAR is unset)."""
    return _DEFAULT.sub(lambda m: m.group(2) or "", str(value))


def known_settings() -> set[str]:
    """Every environment variable the clapsearch processes read: the settings fields (the
    commands read none themselves)."""
    from service.settings import ServiceSettings

    prefix = ServiceSettings.model_config.get("env_prefix", "CLAPSEARCH_")
    return {prefix + name.upper() for name in ServiceSettings.model_fields}
