"""Run nanoclaw.provision modules for real through ansible-playbook, against real engines.

Engines (prepared by `./run integration:modules`, see tests/harness/fixtures.py):
- ``docker``: rootful Docker (Debian's dockerd), the CLI run as root;
- ``podman``: rootless Podman as the unprivileged user $NANOCLAW_IT_USER, reached through the
  ``docker`` wrapper in that user's ~/.local/bin (the podman-docker shim's job).
Images: localhost/nanoclaw-fixture-agent:MODE, TEST FIXTURES (fake agents, not NanoClaw).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
OUTPUT = REPO / "tests" / "output"
BIN = Path(sys.executable).parent
AGENT = os.environ.get("NANOCLAW_IT_IMAGE", "localhost/nanoclaw-fixture-agent")
TEST_USER = os.environ.get("NANOCLAW_IT_USER", "nanoclaw-it")


@dataclass(frozen=True)
class Engine:
    """Where the modules run the CLI: as whom, and how a test inspects that engine itself."""

    key: str
    user: str | None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The same engine, called directly by the test (not through the module)."""
        if self.user is None:
            argv = ["docker", *args]
        else:
            entry = pwd.getpwnam(self.user)
            argv = [
                "runuser",
                "-u",
                self.user,
                "--",
                "env",
                "-i",
                f"HOME={entry.pw_dir}",
                "PATH=/usr/bin:/bin",
                f"XDG_RUNTIME_DIR=/run/user/{entry.pw_uid}",
                "podman",
                *args,
            ]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)

    def names(self, *filters: str) -> list[str]:
        argv = ["ps", "-a"]
        for f in filters:
            argv += ["--filter", f]
        return self.cli(*argv, "--format", "{{.Names}}").stdout.split()

    def module_args(self, **args) -> dict:
        return {**({"user": self.user} if self.user else {}), **args}


DOCKER = Engine("docker", None)
PODMAN = Engine("podman", TEST_USER)


def by_name(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def table(result: dict) -> str:
    rows = ["| name | required | passed | seconds | detail |", "|---|---|---|---|---|"]
    for c in result["checks"]:
        detail = c["detail"].replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {c['name']} | {c['required']} | {c['passed']} | {c['seconds']:.2f} | {detail} |")
    return "\n".join(rows)


def record(name: str, text: str) -> None:
    """Keep what the report needs (tables, timings) in tests/output."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / name).write_text(text)


def host_cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


@contextlib.contextmanager
def device_mode(path: str, mode: int) -> Iterator[None]:
    """Set a device node's mode for the duration (as a normal host has, or as this one has), then restore it."""
    before = stat.S_IMODE(os.stat(path).st_mode)
    os.chmod(path, mode)
    try:
        yield
    finally:
        os.chmod(path, before)


@pytest.fixture(scope="session")
def engines_ready() -> None:
    missing = []
    if DOCKER.cli("info").returncode != 0:
        missing.append("a Docker engine for root (./run integration:modules starts one)")
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        missing.append(f"the rootless test user {TEST_USER}")
    if missing:
        pytest.fail("prepare the engines with ./run integration:modules: missing " + ", ".join(missing))


@pytest.fixture
def tun_usable() -> Iterator[None]:
    """/dev/net/tun as a normal Debian/Ubuntu host has it (0666): rootless networking needs it."""
    with device_mode("/dev/net/tun", 0o666):
        yield
