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
