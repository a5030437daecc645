"""Helpers shared by the podman and docker role verify tests (molecule/nanoclaw_podman/podman_tests and
molecule/nanoclaw_docker/docker_tests) and the preflight ones (run_play): act as the NanoClaw user,
drive a role with bad input. On the import path through the repository's pytest `pythonpath`."""

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
# systemd configuration, profile snippets, local facts and the user's home. The
# NanoClaw checkout in that home is left out: the nanoclaw_* scenarios run these
# tests next to a running NanoClaw service, which writes its logs and state there
# (and no runtime role writes there).
FINGERPRINT = (
    "{ md5sum /etc/passwd /etc/group /etc/shadow /etc/subuid /etc/subgid; "
    "find /etc/containers /etc/profile.d /etc/systemd /etc/ansible /var/lib/systemd/linger /usr/local/bin "
    "/home -xdev -not -path '*/.ansible*' -not -path '*/.local/share/containers/*' "
    "-not -path '*/.local/share/docker/*' -not -path '*/.cache/*' "
    f"-not -path '/home/{USER}/nanoclaw' -not -path '/home/{USER}/nanoclaw/*' "
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
        "podman",  # pipelined under the harness (tests/harness/ansible_plugins)
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


PLANTED = "/etc/nanoclaw-planted-target"


def assert_planted_symlinks_not_followed(name: str, node, playbook: Path, subdirs: list[str], extra_vars: dict) -> str:
    """Issue 16.1: the service user replaces directories of its home the role writes into with
    symlinks to a root-owned directory; a converge must neither chown nor write that directory.

    The role writes in the user's home as the user, so the writes fail (the user cannot write
    there) and the directory is left exactly as it was. The home is restored afterwards.
    """
    home = node.user(USER).home
    node.run(f"rm -rf {PLANTED} && mkdir -m 0755 {PLANTED} && echo root-owned > {PLANTED}/keep")
    state = f"stat -c '%U:%G %a' {PLANTED} && ls -A {PLANTED} && md5sum {PLANTED}/keep"
    before = node.check_output(state)
    for sub in subdirs:
        moved = as_user(node, f"mv {home}/{sub} {home}/{sub}.moved && ln -s {PLANTED} {home}/{sub}")
        assert moved.rc == 0, moved.stderr
    try:
        result = run_play(name, playbook, extra_vars)
        out = result.stdout + result.stderr
        after = node.check_output(state)
        assert after == before, f"root followed the planted symlink into {PLANTED}:\n{before}\n->\n{after}\n{out[-3000:]}"
        return out
    finally:
        for sub in subdirs:
            node.run(f"rm -f {home}/{sub} && mv {home}/{sub}.moved {home}/{sub}")
        node.run(f"rm -rf {PLANTED}")


def play_fails_unchanged(playbook: Path, extra_vars: dict, *expected: str) -> str:
    """Bad input on the Debian 12 target: the play fails, its output names every ``expected``
    text, and the target's accounts and configuration are byte for byte unchanged."""
    name, node = target("debian12")[:2]
    before = fingerprint(node)
    result = run_play(name, playbook, extra_vars)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    for text in expected:
        assert text in out, f"{text!r} not in output:\n{out[-4000:]}"
    assert fingerprint(node) == before
    return out
