"""The dependency audit CI runs (scripts/audit_dependencies.py): a found vulnerability fails,
unless accepted with a reason in .ci/audit-ignore.txt; no reachable vulnerability service is a
loud skip, never a red CI."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _audit():
    spec = importlib.util.spec_from_file_location("audit_dependencies", REPO / "scripts" / "audit_dependencies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


audit = _audit()


def report(*deps: dict) -> str:
    return json.dumps({"dependencies": list(deps), "fixes": []})


VULNERABLE = {
    "name": "jinja2",
    "version": "3.1.2",
    "vulns": [{"id": "PYSEC-2024-1", "aliases": ["CVE-2024-9"], "fix_versions": ["3.1.4"]}],
}
CLEAN = {"name": "numpy", "version": "2.3.0", "vulns": []}
UNCHECKED = {
    "name": "faiss-cpu",
    "skip_reason": "Dependency not found on PyPI and could not be audited: faiss-cpu (1.9)",
}
EDITABLE = {"name": "clapsearch", "skip_reason": "distribution marked as editable"}


def test_a_found_vulnerability_fails_and_names_the_fix():
    verdict = audit.verdict(1, report(CLEAN, VULNERABLE, EDITABLE), "", {})
    assert verdict.exit_code == 1 and "jinja2 3.1.2: PYSEC-2024-1 (fixed in 3.1.4)" in verdict.message


@pytest.mark.parametrize("accepted", ["PYSEC-2024-1", "CVE-2024-9"])
def test_an_accepted_vulnerability_passes(accepted):
    assert audit.verdict(1, report(CLEAN, VULNERABLE), "", {accepted: "not reachable from clapsearch"}).exit_code == 0


def test_a_clean_audit_passes_and_counts_what_it_checked():
    verdict = audit.verdict(0, report(CLEAN, UNCHECKED, EDITABLE), "", {})
    assert verdict.exit_code == 0 and "1 packages checked" in verdict.message and "1 not checkable" in verdict.message


def test_no_reachable_service_is_a_loud_skip_not_a_failure():
    offline = "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.osv.dev'): Max retries exceeded"
    verdict = audit.verdict(1, "", offline, {})
    assert verdict.exit_code == 0 and "SKIPPED" in verdict.message
    mirror = audit.verdict(0, report(UNCHECKED, EDITABLE), "", {})  # every package unanswered
    assert mirror.exit_code == 0 and "SKIPPED" in mirror.message and "none of the 1 packages" in mirror.message


def test_pip_audit_failing_for_another_reason_fails():
    assert audit.verdict(2, "", "usage: pip-audit: error: unrecognized arguments", {}).exit_code == 1


def test_an_ignore_entry_needs_a_reason_and_the_checked_in_file_is_valid():
    assert audit.read_ignores("# comment\n\nGHSA-1  only in the dashboard  # why\n") == {
        "GHSA-1": "only in the dashboard"
    }
    with pytest.raises(ValueError, match="needs a reason"):
        audit.read_ignores("GHSA-1\n")
    audit.read_ignores((REPO / ".ci" / "audit-ignore.txt").read_text())


def test_the_test_command_runs_the_audit():
    assert "scripts/audit_dependencies.py" in (REPO / "scripts" / "test.sh").read_text()
