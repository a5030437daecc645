"""Helpers of the kubernetes role's stage A tests: a real control plane started by the harness.

`./run k8s:a` starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler on
loopback and passes the admin kubeconfig and the kubectl it built in the environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@dataclass
class Run:
    rc: int
    out: str
    seconds: float

    @property
    def changed(self) -> int:
        match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", self.out)
        assert match, f"no PLAY RECAP in the output:\n{self.out[-3000:]}"
        return int(match.group(1))

    @property
    def text(self) -> str:
        """The output with runs of whitespace made one space (the callback wraps long messages)."""
        return " ".join(self.out.split())

    @property
    def failed(self) -> bool:
        return self.rc != 0


@dataclass
class ClusterAccess:
    kubeconfig: Path
    kubectl_bin: Path

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input_text,
            check=False,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def exists(self, *args: str) -> bool:
        return self.kubectl("get", *args, check=False).returncode == 0

    def run_role(self, extra_vars: dict, *, check: bool = False, diff: bool = False, verbosity: int = 0, kubeconfig: bool = True) -> Run:
        """Run the role for real through ansible-playbook with ``extra_vars``."""
        variables = dict(extra_vars)
        if kubeconfig:
            variables.setdefault("nanoclaw_kubernetes_kubeconfig", str(self.kubeconfig))
        variables.setdefault("ansible_python_interpreter", sys.executable)
        argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", json.dumps(variables), str(HERE / "play_kubernetes.yml")]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        if verbosity:
            argv.append("-" + "v" * verbosity)
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=900)
        run = Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)
        timing = HERE.parent / "output" / "k8s-role-timings.txt"
        timing.parent.mkdir(parents=True, exist_ok=True)
        with timing.open("a") as out:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            out.write(f"{run.seconds:7.1f} s rc={run.rc} check={check} {test}\n")
        return run


@pytest.fixture(scope="session")
def cluster() -> ClusterAccess:
    kubeconfig = os.environ.get("NANOCLAW_K8S_KUBECONFIG")
    kubectl = os.environ.get("NANOCLAW_K8S_KUBECTL")
    if not kubeconfig or not kubectl:
        pytest.fail("NANOCLAW_K8S_KUBECONFIG/NANOCLAW_K8S_KUBECTL are not set: run these tests through `./run k8s:a`")
    return ClusterAccess(Path(kubeconfig), Path(kubectl))


@dataclass
class ModulePlay:
    results: list[dict]
    log: str
    rc: int
    seconds: float


def run_module(tmp_path: Path, module: str, calls: list[dict], *, concurrent: bool = False, check: bool = False) -> ModulePlay:
    """Run ``module`` once per entry of ``calls`` through ansible-playbook; each registered result in order.

    ``concurrent``: start every call as an async task (poll 0) and then wait for all of them,
    so the calls really run at the same time.
    """
    run_id = uuid.uuid4().hex[:8]
    out = tmp_path / f"results-{run_id}.json"
    tasks = []
    for index, call in enumerate(calls):
        # JSON is YAML: the arguments go in as written, each call its own task.
        tasks.append(
            f"    - name: Call {index} of {module}\n"
            f"      nanoclaw.provision.{module}: {json.dumps(call)}\n"
            f"      register: it_{index}\n"
            f"      ignore_errors: true\n" + ("      async: 600\n      poll: 0\n" if concurrent else "")
        )
    if concurrent:
        for index in range(len(calls)):
            tasks.append(
                f"    - name: Wait for call {index}\n"
                f'      ansible.builtin.async_status:\n        jid: "{{{{ it_{index}.ansible_job_id }}}}"\n'
                f"      register: done_{index}\n      until: done_{index}.finished\n      retries: 600\n      delay: 1\n"
                f"      ignore_errors: true\n"
            )
    saved = ", ".join(f"{'done' if concurrent else 'it'}_{i}" for i in range(len(calls)))
    playbook = tmp_path / f"play-{run_id}.yml"
    playbook.write_text(
        "---\n- name: Module under test\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        + "".join(tasks)
        + "    - name: Save the results\n"
        + "      ansible.builtin.copy:\n"
        + f'        content: "{{{{ [{saved}] | to_json }}}}"\n'
        + f"        dest: {out}\n"
        + '        mode: "0600"\n'
        + "      check_mode: false\n"
    )
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=1800)
    log = proc.stdout + proc.stderr
    assert out.exists(), f"the playbook did not save results:\n{log[-3000:]}"
    return ModulePlay(results=json.loads(out.read_text()), log=log, rc=proc.returncode, seconds=time.monotonic() - started)


def smoke_args(cluster: ClusterAccess, namespace: str, **args) -> dict:
    """agent_smoke_job's arguments in ``namespace`` (group main, the FIXTURE image), plus ``args``."""
    return {
        "image": "localhost/nanoclaw-fixture-agent:ok",
        "kubeconfig": str(cluster.kubeconfig),
        "namespace": namespace,
        "group": "main",
        "timeout": 120,
        **args,
    }
