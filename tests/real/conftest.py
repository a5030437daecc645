"""Helpers of the real-NanoClaw tests: the demo targets of tests/harness/demo.py, read from outside."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.harness.common import PROFILE_ENV, parse_recap

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "tests" / "output"
INVENTORY = Path(os.environ.get("NANOCLAW_DEMO_INVENTORY", REPO / "inventories" / "demo" / "hosts.yml"))
UPSTREAM_JSON = Path(os.environ.get("NANOCLAW_UPSTREAM_JSON", REPO / ".cache" / "nanoclaw-upstream" / "upstream.json"))
USER = "nanoclaw"
HOME = f"/home/{USER}"
ROOT = f"{HOME}/nanoclaw"
EVIDENCE: list[str] = []


def hosts() -> dict[str, dict]:
    data = yaml.safe_load(INVENTORY.read_text())
    return data["nanoclaw_hosts"]["hosts"]


def sh(target: str, script: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A shell script in a target, as root or as ``user`` with its systemd user manager reachable."""
    if user:
        uid = subprocess.run(["podman", "exec", target, "id", "-u", user], capture_output=True, text=True, check=True).stdout.strip()
        script = f"cd ~{user} && XDG_RUNTIME_DIR=/run/user/{uid} sh -c {shlex.quote(script)}"
        argv = ["podman", "exec", target, "runuser", "-u", user, "--", "sh", "-c", script]
    else:
        argv = ["podman", "exec", target, "sh", "-c", script]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{target}: {script!r} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def playbook(name: str, log_name: str, target: str, *extra: str) -> tuple[int, str, float]:
    """``playbooks/<name>`` on one demo target, with the tasks' timings; the output is kept in
    tests/output/<log_name>. Returns (rc, stdout, seconds)."""
    binary = str(Path(sys.executable).parent / "ansible-playbook")
    argv = [binary, "-i", str(INVENTORY), str(REPO / "playbooks" / name), "--limit", target, *extra]
    started = time.monotonic()
    env = {**PROFILE_ENV, **os.environ}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / log_name).write_text(proc.stdout + proc.stderr)
    return proc.returncode, proc.stdout, time.monotonic() - started


def changed(out: str, target: str) -> int | None:
    """``target``'s changed count in the PLAY RECAP of ``out`` (None without a recap line)."""
    return parse_recap(out.splitlines()).get(target, {}).get("changed")


def unit_state(target: str, unit: str) -> dict[str, str]:
    props = "ActiveState,SubState,NRestarts,MainPID,ExecMainStartTimestampMonotonic,LoadState"
    out = sh(target, f"systemctl --user show {unit} --property={props}", user=USER).stdout
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    mono = float(sh(target, "cat /proc/uptime").stdout.split()[0])
    start = int(state.get("ExecMainStartTimestampMonotonic") or 0) / 1e6
    state["UpSeconds"] = f"{mono - start:.1f}" if start else "0"
    return state


@pytest.fixture(scope="session")
def upstream() -> dict:
    return json.loads(UPSTREAM_JSON.read_text())


@pytest.fixture(scope="session", autouse=True)
def _evidence():
    """What the tests saw, kept in tests/output/ for the issue's notes."""
    yield
    if EVIDENCE:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / f"real-evidence-{os.environ.get('NANOCLAW_REAL_STAGE', 'local')}.txt"
        path.write_text("\n".join(EVIDENCE) + "\n")
        print("\nEVIDENCE:\n" + "\n".join(EVIDENCE))
