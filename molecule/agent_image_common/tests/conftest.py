"""Helpers of the agent_image verify tests: real registries, real engines, real ansible-playbook runs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

from tests.harness import registry as harness_registry

HERE = Path(__file__).resolve().parent
COMMON = HERE.parent
REPO = HERE.parents[2]
BIN = Path(sys.executable).parent

SCENARIO = os.environ["MOLECULE_SCENARIO_NAME"]
ENGINE = "docker" if "docker" in SCENARIO else "podman"
USER = "nanoclaw"
FIXTURE = "/home/nanoclaw/nanoclaw"
INFO = json.loads(Path(os.environ.get("NANOCLAW_REGISTRY_INFO") or harness_registry.INFO_FILE).read_text())
PUSH = harness_registry.PUSH
TIMINGS = REPO / "tests" / "output" / f"agent_image_timings-{SCENARIO}.json"
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def targets() -> list[str]:
    out = subprocess.run(
        ["podman", "ps", "--filter", f"name=^{SCENARIO}-", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout
    return sorted(out.split())


def converge(targets: list[str] | str, extra_vars: dict | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the scenario's converge play against ``targets`` (in parallel), with ``extra_vars`` on top."""
    names = [targets] if isinstance(targets, str) else targets
    argv = [
        str(BIN / "ansible-playbook"),
        "-i",
        ",".join(names) + ",",
        "-c",
        "podman",  # pipelined under the harness (tests/harness/ansible_plugins)
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-e",
        json.dumps(extra_vars or {}),
        str(COMMON / "converge.yml"),
    ]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=2400)
    proc.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return proc


def host_output(proc: subprocess.CompletedProcess[str], target: str) -> str:
    """The lines of a run that concern ``target`` (task results, messages) plus stderr."""
    keep, lines = False, []
    for line in proc.stdout.splitlines():
        if re.match(r"^(ok|changed|fatal|failed|skipping|included)[:!]? ", line):
            keep = f"[{target}]" in line
        elif line.startswith(("TASK ", "PLAY ")):
            keep = False
        if keep:
            lines.append(line)
    # Whitespace-normalised: the YAML callback wraps long messages.
    return " ".join(("\n".join(lines) + "\n" + proc.stderr).split())


def all_output(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join((proc.stdout + "\n" + proc.stderr).split())


def task_results(proc: subprocess.CompletedProcess[str], target: str, task: str) -> list[str]:
    """Statuses (ok, changed, skipping, fatal) of ``target`` in the tasks whose name contains ``task``, one per loop item."""
    statuses, current = [], ""
    for line in proc.stdout.splitlines():
        header = re.match(r"^TASK \[(.*)\]", line)
        if header:
            current = header.group(1)
        elif task in current:
            result = re.match(rf"^(ok|changed|skipping|fatal|failed): \[{re.escape(target)}\]", line)
            if result:
                statuses.append(result.group(1))
    return statuses


def recap(proc: subprocess.CompletedProcess[str], target: str) -> dict[str, int]:
    match = re.search(rf"{re.escape(target)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert match, f"no PLAY RECAP for {target}:\n{proc.stdout[-3000:]}"
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=False))


def record_timing(name: str, seconds: float) -> None:
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    data[name] = round(seconds, 1)
    TIMINGS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class Target:
    """One molecule target and what the role should have made there."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.host = testinfra.get_host(f"podman://{name}")
        self.generation = 1 if "debian12" in name else 2
        self.namespace = f"ci/{name.replace('_', '-')}"
        self.uid = self.host.user(USER).uid if ENGINE == "podman" else 0

    def run_as_user(self, command: str):
        if ENGINE == "docker":
            return self.host.run(command)
        return self.host.run(f"runuser -u {USER} -- env XDG_RUNTIME_DIR=/run/user/{self.uid} HOME=/home/{USER} {command}")

    def engine(self, args: str):
        return self.run_as_user(f"{ENGINE} {args}")

    @property
    def commit(self) -> str:
        return self.host.check_output(f"git -c safe.directory={FIXTURE} -C {FIXTURE} rev-parse HEAD")

    @property
    def name_without_tag(self) -> str:
        if self.generation == 1:
            return "nanoclaw-agent"
        physical = self.host.check_output(f"realpath {FIXTURE}")
        return "nanoclaw-agent-v2-" + hashlib.sha1(physical.encode()).hexdigest()[:8]

    @property
    def local(self) -> str:
        return ("localhost/" if ENGINE == "podman" else "") + self.name_without_tag

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.name_without_tag}"

    def inspect(self, ref: str) -> dict:
        proc = self.engine(f"image inspect {ref}")
        assert proc.rc == 0, f"{ref} not in the {ENGINE} store of {self.name}: {proc.stderr}"
        return json.loads(proc.stdout)[0]

    def image_id(self, ref: str) -> str:
        image_id = self.inspect(ref)["Id"]
        return image_id if image_id.startswith("sha256:") else "sha256:" + image_id

    def commit_change(self, text: str) -> str:
        self.host.check_output(
            f"runuser -u {USER} -- sh -c 'cd {FIXTURE} && echo {text} >> README.md && "
            f"git -c user.name=fixture -c user.email=fixture@nanoclaw.invalid commit -q -am {text}'"
        )
        return self.commit


def registry_manifest(repository: str, ref: str, reg: harness_registry.Registry = PUSH) -> tuple[int, str | None, dict]:
    status, headers, body = harness_registry.api(reg, f"/v2/{repository}/manifests/{ref}", accept=MANIFEST_ACCEPT)
    if status != 200:
        return status, None, {}
    return status, headers.get("Docker-Content-Digest"), json.loads(body)


def registry_json(path: str, reg: harness_registry.Registry = PUSH) -> dict:
    status, _headers, body = harness_registry.api(reg, path)
    assert status == 200, f"{reg.address}{path} answered {status}: {body[:300]!r}"
    return json.loads(body)


TARGETS = targets()


@pytest.fixture(params=TARGETS)
def target(request) -> Target:
    # Function scope on purpose: tests run in file order, each on every target.
    return Target(request.param)
