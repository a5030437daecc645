"""Run a role's tasks for real with ansible-playbook against this machine (connection local).

For what needs no target container: validation that fails before anything is touched, and
tasks that only write under a temporary directory. Everything else runs in molecule.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def run_playbook(path: Path, extra_vars: dict, *, check: bool = False, verbosity: int = 0) -> subprocess.CompletedProcess[str]:
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    argv += ["-e", json.dumps(extra_vars), str(path)]
    if check:
        argv.append("--check")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache" / "collections"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=600, cwd=REPO)


def flat(text: str) -> str:
    """Ansible's YAML output folds long messages: compare with whitespace collapsed."""
    return " ".join(text.split()).replace("''", "'")
