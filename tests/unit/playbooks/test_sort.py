"""playbooks/sort.yml puts each host into the group of its nanoclaw_runtime, and refuses a
runtime that does not fit the host's group with a message naming the variable. Runs the real
play with ansible-playbook against local hosts (no connection is made: the play only asserts
and groups)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = REPO / "playbooks" / "sort.yml"
SHOW = """
- name: Show the groups
  hosts: all
  gather_facts: false
  tasks:
    - name: Print them
      ansible.builtin.debug:
        msg: "GROUPS={{ groups | to_json | b64encode }}"
      run_once: true
"""


def play(tmp_path: Path, inventory: dict) -> subprocess.CompletedProcess[str]:
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    site = tmp_path / "play.yml"
    site.write_text(f"- name: Sort\n  ansible.builtin.import_playbook: {PLAYBOOK}\n{SHOW}")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    ansible = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(ansible), "-i", str(tmp_path / "hosts.json"), "-c", "local", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def host(runtime: str | None = None) -> dict:
    return {"ansible_connection": "local"} | ({"nanoclaw_runtime": runtime} if runtime else {})


def test_hosts_are_grouped_by_runtime(tmp_path: Path) -> None:
    inventory = {
        "nanoclaw_hosts": {"hosts": {"a": host(), "b": host("docker")}},
        "nanoclaw_clusters": {"hosts": {"c": host()}},
    }
    done = play(tmp_path, inventory)
    assert done.returncode == 0, done.stdout + done.stderr
    groups = json.loads(base64.b64decode(re.search(r"GROUPS=([A-Za-z0-9+/=]+)", done.stdout).group(1)))  # type: ignore[union-attr]
    assert groups["nanoclaw_runtime_podman"] == ["a"]
    assert groups["nanoclaw_runtime_docker"] == ["b"]
    assert groups["nanoclaw_runtime_kubernetes"] == ["c"]


@pytest.mark.parametrize(
    ("group", "runtime"),
    [("nanoclaw_hosts", "kubernetes"), ("nanoclaw_hosts", "lxc"), ("nanoclaw_clusters", "podman")],
)
def test_a_runtime_that_does_not_fit_is_refused_by_name(tmp_path: Path, group: str, runtime: str) -> None:
    done = play(tmp_path, {group: {"hosts": {"x": host(runtime)}}})
    assert done.returncode != 0
    assert f'nanoclaw_runtime is "{runtime}" on x' in done.stdout
