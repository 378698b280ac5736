"""Dependency audit (pip-audit) of the installed .venv, run by scripts/test.sh and so by CI.

    python scripts/audit_dependencies.py            # exit 0: clean or not checkable; 1: vulnerable

Best effort where no vulnerability service answers: pip-audit asks PyPI's JSON API (or OSV with
CLAPSEARCH_AUDIT_SERVICE=osv); offline, behind a mirror without that API, or when the service
fails, the audit says loudly that it checked nothing (or only some packages) and does not fail
the run: a network problem must not turn CI red. A vulnerability that IS found fails the run,
unless ``.ci/audit-ignore.txt`` lists its id with a reason (one per line: ``ID  reason``); an
entry without a reason is itself an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORE_FILE = REPO / ".ci" / "audit-ignore.txt"
# what pip-audit (and requests under it) print when no service could be asked at all
_NETWORK_WORDS = ("ConnectionError", "NameResolutionError", "Max retries", "Timeout", "timed out", "SSLError")
_NOT_AUDITED = "could not be audited"


@dataclass(frozen=True)
class Verdict:
    exit_code: int
    message: str


def read_ignores(text: str) -> dict[str, str]:
    """``ID  reason`` lines (``#`` comments, blank lines skipped) -> {id: reason}."""
    ignores: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        vuln_id, _, reason = line.partition(" ")
        if not reason.strip():
            raise ValueError(f"{IGNORE_FILE.name} line {number}: {vuln_id} needs a reason after the id")
        ignores[vuln_id] = reason.strip()
    return ignores


def verdict(returncode: int, stdout: str, stderr: str, ignores: dict[str, str]) -> Verdict:
    """What pip-audit's run means for CI."""
    try:
        report = json.loads(stdout)
        dependencies = report["dependencies"]
    except (ValueError, KeyError, TypeError):
        if any(word in stderr for word in _NETWORK_WORDS):
            last = (stderr.strip().splitlines() or ["?"])[-1][:300]
            return Verdict(0, f"dependency audit SKIPPED (best effort): no vulnerability service reachable: {last}")
        return Verdict(1, f"dependency audit failed: pip-audit exited {returncode}:\n{stderr[-2000:]}")
    found = [
        f"{dep['name']} {dep.get('version', '?')}: {vuln['id']} (fixed in {', '.join(vuln.get('fix_versions', [])) or '?'})"
        for dep in dependencies
        for vuln in dep.get("vulns", [])
        if vuln["id"] not in ignores and not set(vuln.get("aliases", [])) & set(ignores)
    ]
    if found:
        return Verdict(
            1,
            "dependency audit: known vulnerabilities (upgrade, or list the id with a reason in .ci/audit-ignore.txt):\n  "
            + "\n  ".join(found),
        )
    dependencies = [dep for dep in dependencies if "editable" not in dep.get("skip_reason", "")]  # this checkout
    skipped = [dep["name"] for dep in dependencies if _NOT_AUDITED in dep.get("skip_reason", "")]
    checked = len(dependencies) - len(skipped)
    if dependencies and checked == 0:
        return Verdict(
            0,
            f"dependency audit SKIPPED (best effort): the vulnerability service answered for none of the "
            f"{len(dependencies)} packages (offline, or an index without PyPI's JSON API)",
        )
    partial = f"; {len(skipped)} not checkable ({', '.join(skipped[:5])}...)" if skipped else ""
    return Verdict(0, f"dependency audit: {checked} packages checked, no known vulnerabilities{partial}")


def main() -> int:
    try:
        ignores = read_ignores(IGNORE_FILE.read_text() if IGNORE_FILE.exists() else "")
    except ValueError as exc:
        print(f"dependency audit: {exc}", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "pip_audit", "--local", "--skip-editable", "--format", "json"]
    command += ["--progress-spinner", "off", "--timeout", "10"]
    command += ["--vulnerability-service", os.environ.get("CLAPSEARCH_AUDIT_SERVICE", "pypi")]
    for vuln_id in ignores:
        command += ["--ignore-vuln", vuln_id]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        print("dependency audit SKIPPED (best effort): pip-audit took over 300 s", file=sys.stderr)
        return 0
    result = verdict(run.returncode, run.stdout, run.stderr, ignores)
    print(result.message, file=sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
