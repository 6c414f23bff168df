"""`python -m pipeline.audit`: the supply-chain step of `invoke check`.

Runs pip-audit over the installed (resolved) dependencies and fails on any known
vulnerability. pip-audit asks a vulnerability service (PyPI's JSON API by default);
where that service cannot be reached (an offline machine, a package mirror without
it), every dependency comes back skipped: that is said in one warning rather than
passed off as "no known vulnerabilities", and `pip check` (offline: the resolved set
is consistent) still runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    vulnerable: list[str]  # "name version: ID (fixed in ...)"
    audited: int
    skipped: int


def verdict(report: dict[str, Any]) -> Verdict:
    """What one `pip-audit --format json` report says. Pure."""
    vulnerable, audited, skipped = [], 0, 0
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped += 1
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            vulnerable.append(
                f"{dep['name']} {dep.get('version', '?')}: {vuln.get('id', '?')} (fixed in {fixed})"
            )
    return Verdict(vulnerable, audited, skipped)


def main() -> int:
    consistent = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    if consistent.returncode != 0:
        print(f"error: pip check: {consistent.stdout.strip()}", file=sys.stderr)
        return 1
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_audit",
            "--skip-editable",
            "--progress-spinner",
            "off",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    try:
        found = verdict(json.loads(proc.stdout))
    except (json.JSONDecodeError, AttributeError):
        first = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        print(f"warning: pip-audit did not run: {first}", file=sys.stderr)
        return 0
    for line in found.vulnerable:
        print(f"vulnerable: {line}")
    if found.vulnerable:
        print(
            f"error: {len(found.vulnerable)} known vulnerabilities; upgrade within the ranges in pyproject.toml",
            file=sys.stderr,
        )
        return 1
    if found.audited == 0:
        print(
            f"warning: pip-audit reached no vulnerability service ({found.skipped} dependencies skipped); "
            "nothing was audited here (CI audits them)",
            file=sys.stderr,
        )
        return 0
    print(f"pip-audit: {found.audited} dependencies, no known vulnerabilities ({found.skipped} not on PyPI)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
