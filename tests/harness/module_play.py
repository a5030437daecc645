"""Run a module of the collection through a real ansible-playbook, one task per call, and read back
what each task registered. The integration and Kubernetes tests call modules this way, so that the
arguments pass Ansible's own validation and the results are what a playbook sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.harness.common import REPO

BIN = Path(sys.executable).parent


@dataclass
class ModulePlay:
    results: list[dict]
    log: str
    rc: int
    seconds: float

    @property
    def result(self) -> dict:
        return self.results[0]


def _tasks(module: str, calls: list[dict], concurrent: bool) -> tuple[list[str], list[str]]:
    """The playbook's tasks and the names of the variables that end up holding each call's result."""
    tasks = []
    for index, call in enumerate(calls):
        # JSON is YAML: the arguments go in as written, each call its own task.
        tasks.append(
            f"    - name: Call {index} of {module}\n"
            f"      nanoclaw.provision.{module}: {json.dumps(call)}\n"
            f"      register: it_{index}\n"
            f"      ignore_errors: true\n" + ("      async: 600\n      poll: 0\n" if concurrent else "")
        )
    if not concurrent:
        return tasks, [f"it_{i}" for i in range(len(calls))]
    for index in range(len(calls)):
        tasks.append(
            f"    - name: Wait for call {index}\n"
            f'      ansible.builtin.async_status:\n        jid: "{{{{ it_{index}.ansible_job_id }}}}"\n'
            f"      register: done_{index}\n      until: done_{index}.finished\n      retries: 600\n      delay: 1\n"
            f"      ignore_errors: true\n"
        )
    return tasks, [f"done_{i}" for i in range(len(calls))]


def run_module(
    tmp_path: Path, module: str, calls: list[dict], *, concurrent: bool = False, check: bool = False, verbosity: int = 0
) -> ModulePlay:
    """Run ``module`` once per entry of ``calls`` in one playbook; each registered result in order, and the log.

    ``concurrent``: start every call as an async task (poll 0) and then wait for all of them,
    so the calls really run at the same time.
    """
    run_id = uuid.uuid4().hex[:8]
    out = tmp_path / f"results-{run_id}.json"
    tasks, saved = _tasks(module, calls, concurrent)
    playbook = tmp_path / f"play-{run_id}.yml"
    playbook.write_text(
        "---\n- name: Module under test\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        + "".join(tasks)
        + "    - name: Save the results\n"
        + "      ansible.builtin.copy:\n"
        + f'        content: "{{{{ [{", ".join(saved)}] | to_json }}}}"\n'
        + f"        dest: {out}\n"
        + '        mode: "0600"\n'
        + "      check_mode: false\n"
    )
    playbook.chmod(0o600)
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    if check:
        argv.append("--check")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=1800, cwd=REPO)
    log = proc.stdout + proc.stderr
    assert out.exists(), f"the playbook did not save results:\n{log[-3000:]}"
    return ModulePlay(results=json.loads(out.read_text()), log=log, rc=proc.returncode, seconds=time.monotonic() - started)
