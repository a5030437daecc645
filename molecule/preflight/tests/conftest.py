"""Helpers of the preflight verify tests: run the role for real with other input."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_tests import run_play

HERE = Path(__file__).resolve().parent


def run_preflight(container: str, extra_vars: dict, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run play_preflight.yml against a podman container with ``extra_vars`` (as the runtime roles' tests run theirs)."""
    return run_play(container, HERE / "play_preflight.yml", extra_vars, check=check)


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
