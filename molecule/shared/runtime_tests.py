"""Helpers shared by the podman and docker verify tests: act as the NanoClaw user, drive a role with bad input."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

BIN = Path(sys.executable).parent
USER = "nanoclaw"
IMAGE = "localhost/nanoclaw-smoke:latest"
ARCHIVE = "/opt/nanoclaw-smoke/smoke.tar"

# What a bad-input run must leave untouched: accounts, id ranges, Podman and
# systemd configuration, profile snippets, local facts and the user's home.
FINGERPRINT = (
    "{ md5sum /etc/passwd /etc/group /etc/shadow /etc/subuid /etc/subgid; "
    "find /etc/containers /etc/profile.d /etc/systemd /etc/ansible /var/lib/systemd/linger /usr/local/bin "
    "/home -xdev -not -path '*/.ansible*' -not -path '*/.local/share/containers/*' "
    "-not -path '*/.local/share/docker/*' -not -path '*/.cache/*' "
    "-printf '%p %m %U %G %s %T@\\n' 2>/dev/null | LC_ALL=C sort; } | md5sum"
)


def as_user(node, command: str, user: str = USER):
    """Run ``command`` in a login shell of ``user`` (profile.d gives it DOCKER_HOST and XDG_RUNTIME_DIR)."""
    return node.run(f"su - {user} -c {shlex.quote(command)}")


def fingerprint(node) -> str:
    return node.check_output(f"bash -c {shlex.quote(FINGERPRINT)}")


def local_fact(node) -> dict:
    return json.loads(node.file("/etc/ansible/facts.d/nanoclaw_podman.fact").content_string)


def cgroup_mode(node) -> str:
    if node.file("/sys/fs/cgroup/cgroup.controllers").exists:
        return "v2"
    if node.file("/sys/fs/cgroup/unified/cgroup.controllers").exists:
        return "hybrid"
    return "v1"


def run_play(container: str, playbook: Path, extra_vars: dict, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``playbook`` against a podman container with ``extra_vars`` (a real ansible-playbook run)."""
    argv = [
        str(BIN / "ansible-playbook"),
        "-i",
        f"{container},",
        "-c",
        "containers.podman.podman",
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-e",
        json.dumps(extra_vars),
        str(playbook),
    ]
    if check:
        argv.append("--check")
    # JSON results keep each message on one line (the YAML format wraps long ones).
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=900)


@pytest.fixture(scope="module")
def node(host):
    """The molecule target through podman exec: testinfra's ansible backend costs an ansible run per command."""
    backend = host.backend
    if backend.NAME == "podman":
        return host
    return testinfra.get_host(f"podman://{backend.host}")


def target(release: str):
    name = f"{os.environ['MOLECULE_SCENARIO_NAME']}-{release}"
    return name, testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def smoke_image(node) -> str:
    """The locally built image, loaded into the user's store through the docker command."""
    if as_user(node, f"docker image inspect {IMAGE} >/dev/null 2>&1").rc != 0:
        loaded = as_user(node, f"docker load -i {ARCHIVE}")
        assert loaded.rc == 0, loaded.stderr
    return IMAGE
