"""Helpers of the preflight verify tests: run the role for real with other input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def run_preflight(container: str, extra_vars: dict, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run play_preflight.yml against a podman container with ``extra_vars``."""
    argv = [
        str(BIN / "ansible-playbook"),
        "-i",
        f"{container},",
        "-c",
        "podman",  # pipelined under the harness (tests/harness/ansible_plugins)
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-e",
        json.dumps(extra_vars),
        str(HERE / "play_preflight.yml"),
    ]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=600)


@pytest.fixture(scope="session")
def plain_container() -> Iterator[str]:
    """A target image container WITHOUT systemd as PID 1 (sleep is PID 1)."""
    name = f"nanoclaw-preflight-nosystemd-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["podman", "run", "-d", "--rm", "--name", name, "localhost/nanoclaw-target:debian12", "sleep", "infinity"],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], check=False, capture_output=True)
