"""No secrets in the repository: pre-commit's `detect-private-key` hook (pre-commit-hooks, a local
hook run from the venv; nothing is cloned) passes over every tracked file, and catches a key."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _hook() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    return hooks["detect-private-key"]


def test_the_hook_is_local_and_runs_from_the_venv() -> None:
    hook = _hook()
    assert (hook["language"], hook["entry"]) == ("system", ".venv/bin/detect-private-key")


def test_pre_commit_finds_no_private_key_in_the_tracked_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROOT / ".venv/bin/pre-commit"), "run", "detect-private-key", "--all-files", "--color", "never"],
        cwd=ROOT,
        # Its own store in tmp_path: a local system hook needs nothing from the network.
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PRE_COMMIT_HOME": str(tmp_path / "pre-commit")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no private keys" in result.stdout and "Passed" in result.stdout


@pytest.mark.parametrize("kind", ["RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY"])
def test_the_hook_catches_a_committed_key(tmp_path: Path, kind: str) -> None:
    # Assembled at run time so that this file itself holds no key marker.
    planted = tmp_path / "settings_local.py"
    planted.write_text(f'KEY = """-----{"BEGIN"} {kind}-----\nMIIEow...\n-----END {kind}-----"""\n')
    result = subprocess.run(
        [*shlex.split(_hook()["entry"]), str(planted)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == f"Private key found: {planted}\n"
