"""Measure what NanoClaw users wait for, and write docs/PERFORMANCE.md.

    python3 -m benchmarks.run             # the full run (>= 20 samples each), writes docs/PERFORMANCE.md
    python3 -m benchmarks.run --smoke     # a short run (CI), writes tests/output/PERFORMANCE-smoke.md
    ./run bench   /   ./run bench:smoke   # the same through the harness

Run it as root on a Debian/Ubuntu machine (like ./run): it sets up what it measures with the
test harness (project virtualenv, Docker and Podman, the rootless user nanoclaw-it, the TEST
FIXTURE agent images, fresh systemd target containers) and uses no other tool.

Every figure is a ratio against a floor measured in the same run, on the same engine:
- agent cold start: nanoclaw.provision.agent_smoke, spawn -> parsed result (the module's own
  ``timings.spawn_to_result``; for the Kubernetes Job row nanoclaw.provision.agent_smoke_job and its
  ``timings.create_to_parsed``), against ``run --rm --entrypoint true IMAGE`` (the fixture agent
  image's entrypoint is the agent itself, so the floor names ``true`` as the entrypoint);
- 5 concurrent agents: the same module on 5 inventory hosts at once (forks=5), per-agent
  latency and throughput against one agent at a time;
- the agent_image role when nothing changed, and site.yml first converge vs rerun on fresh
  target containers per runtime: wall time and changed count, against an Ansible floor (a play
  that only gathers facts on the same target, or only pings localhost).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import demo, ee, fixture_repo, fixtures, images, k8s, k8s_node, registry, services, upstream
from tests.harness.common import CACHE, PROFILE_ENV, REPO, HarnessError, log, run
from tests.harness.setup_env import ensure_collection_link, ensure_venv, load_yaml, tool_env, venv_bin

OUTPUT = REPO / "tests" / "output"
IMAGE = f"{fixtures.AGENT}:ok"
WORK = CACHE / "bench"
SITE_RUNTIMES = ["podman", "docker"]
PARTS = ["engines", "kubernetes", "agent_image", "site"]


# ---------------------------------------------------------------- helpers
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) / 100)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p95": pct(values, 95),
        "min": min(values),
        "max": max(values),
    }


@contextlib.contextmanager
def device_mode(path: str, mode: int) -> Iterator[None]:
    """/dev/net/tun as a normal Debian/Ubuntu host has it (0666) while rootless Podman runs; restored after."""
    if not os.path.exists(path):
        yield
        return
    before = os.stat(path).st_mode & 0o7777
    os.chmod(path, mode)
    try:
        yield
    finally:
        os.chmod(path, before)


def ansible_playbook(argv: list[str], cwd: Path = REPO, env: dict | None = None, log_file: Path | None = None) -> tuple[float, str, int]:
    """Run ansible-playbook from the project venv; returns (wall seconds, output, rc).

    With ``log_file`` the output goes there as it comes (a long run can be followed with tail -f)."""
    full_env = {**os.environ, **tool_env(), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", **(env or {})}
    argv = [str(venv_bin() / "ansible-playbook"), *argv]
    started = time.monotonic()
    if log_file is None:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
        return time.monotonic() - started, proc.stdout + proc.stderr, proc.returncode
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as out:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT, text=True, check=False)
    return time.monotonic() - started, log_file.read_text(errors="replace"), proc.returncode


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host."""
    hosts: dict[str, dict[str, int]] = {}
    for line in output.splitlines():
        m = re.match(r"^(\S+)\s+:\s+(ok=\d+.*)$", line)
        if m:
            hosts[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return hosts


# ---------------------------------------------------------------- engines
@dataclass
class Engine:
    key: str
    title: str
    cli: list[str]  # argv prefix of the same CLI the module runs
    module_args: dict
    env: dict = field(default_factory=dict)
    # The module's timing that is "spawn -> parsed result" for this engine (agent_smoke_job: create_to_parsed).
    result_key: str = "spawn_to_result"
    # The floor on this engine, ``runs`` samples; None: ``run --rm --entrypoint true IMAGE`` with ``cli``.
    floor: Callable[[int], list[float]] | None = None
    # The smoke module that runs the agent on this engine: the container CLI's, or the Kubernetes Job's.
    module: str = "agent_smoke"


def prepare_engines() -> list[Engine]:
    fixtures.ensure_dockerd()
    fixtures.ensure_fixture_images(["docker"], "docker (root)")
    fixtures.ensure_fixture_images(["podman"], "podman (root)")
    entry = fixtures.ensure_test_user()
    fixtures.ensure_fixture_images(fixtures.user_cli(entry), f"rootless podman ({entry.pw_name})")
    # Podman 4.3 rejects --add-host=...:host-gateway (see tests/integration/modules): left out on Podman.
    return [
        Engine("docker", "Docker (rootful)", ["docker"], {}),
        Engine("podman", "Podman (rootful)", ["podman"], {"engine": "podman", "host_gateway": False}),
        Engine(
            "podman-rootless",
            f"Podman (rootless, user {entry.pw_name}, via its docker wrapper)",
            fixtures.user_cli(entry, f"{entry.pw_dir}/.local/bin/docker"),
            {"user": entry.pw_name, "host_gateway": False},
        ),
    ]


def engine_problem(engine: Engine) -> str | None:
    """None when the engine runs a container with its default network; else its error (it is then left out, and said so)."""
    proc = subprocess.run([*engine.cli, "run", "--rm", "--entrypoint", "true", IMAGE], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    return " ".join(proc.stderr.split())[:300] or f"exit code {proc.returncode}"


def floor_runs(engine: Engine, runs: int) -> list[float]:
    """``run --rm --entrypoint true IMAGE`` on the same engine, timed from spawn to exit."""
    argv = [*engine.cli, "run", "--rm", "--entrypoint", "true", IMAGE]
    samples = []
    for index in range(runs + 1):
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            raise HarnessError(f"floor run on {engine.key} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
        if index:  # the first one warms the page cache and is not counted
            samples.append(elapsed)
    return samples


SMOKE_PLAY = """---
- name: {module}, {runs} times per host
  hosts: bench_agents
  gather_facts: false
  tasks:
    - name: Start one agent and parse its result
      nanoclaw.provision.{module}: "{{{{ bench_args }}}}"
      loop: "{{{{ range(bench_runs | int) | list }}}}"
      register: bench_smoke
    - name: Save the timings
      ansible.builtin.copy:
        content: "{{{{ bench_smoke.results | map(attribute='timings') | list | to_json }}}}"
        dest: "{{{{ bench_out }}}}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
"""


def smoke_runs(engine: Engine, runs: int, hosts: int, workdir: Path) -> tuple[list[dict], float]:
    """The engine's smoke module ``runs`` times on each of ``hosts`` localhost aliases at once; (the module's timings, wall)."""
    out = workdir / f"smoke-{engine.key}-{hosts}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    inventory = out / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "bench_agents": {
                    "hosts": {f"bench-agent-{i}": {} for i in range(1, hosts + 1)},
                    "vars": {"ansible_connection": "local", "ansible_python_interpreter": str(venv_bin() / "python")},
                }
            }
        )
    )
    playbook = out / "play.yml"
    playbook.write_text(SMOKE_PLAY.format(module=engine.module, runs=runs))
    extra = out / "vars.json"
    extra.write_text(json.dumps({"bench_args": {"image": IMAGE, **engine.module_args}, "bench_runs": runs, "bench_out": str(out)}))
    wall, output, rc = ansible_playbook(["-i", str(inventory), "-f", str(hosts), "-e", f"@{extra}", str(playbook)], env=engine.env)
    if rc != 0:
        raise HarnessError(f"{engine.module} on {engine.key} ({hosts} at once) failed:\n{output[-3000:]}")
    samples = []
    for i in range(1, hosts + 1):
        samples += json.loads((out / f"bench-agent-{i}.json").read_text())
    return samples, wall


def bench_engine(engine: Engine, runs: int, rounds: int, workdir: Path) -> tuple[dict, dict]:
    """Cold start (floor and agent_smoke, ``runs`` each) and 5 concurrent agents vs one (``rounds`` each) on one engine."""
    log(f"cold start on {engine.key}: floor x{runs}")
    floor = engine.floor(runs) if engine.floor else floor_runs(engine, runs)
    log(f"cold start on {engine.key}: {engine.module} x{runs}")
    smoke_runs(engine, 1, 1, workdir)  # warm-up, not counted
    timings = smoke_runs(engine, runs, 1, workdir)[0]
    agent = [t[engine.result_key] for t in timings]
    total = [t["total"] for t in timings]
    cold = {
        "title": engine.title,
        "floor": summary(floor),
        "agent": summary(agent),
        "total": summary(total),
        "raw": {"floor": floor, "timings": timings},
    }
    log(f"5 concurrent agents on {engine.key}: {rounds} rounds")
    one_t, wall_1 = smoke_runs(engine, rounds, 1, workdir)
    five_t, wall_5 = smoke_runs(engine, rounds, 5, workdir)
    one = [t[engine.result_key] for t in one_t]
    five = [t[engine.result_key] for t in five_t]
    concurrent = {
        "title": engine.title,
        "one": summary(one),
        "five": summary(five),
        "tput_one": len(one) / wall_1,
        "tput_five": len(five) / wall_5,
        "raw": {"one": one, "five": five, "wall_one": wall_1, "wall_five": wall_5},
    }
    return cold, concurrent


# ---------------------------------------------------------------- Kubernetes Job
K8S_NS = "nc-bench"
K8S_FLOOR_NS = "nc-bench-floor"
K8S_TITLE = "Kubernetes Job (harness node)"


def k8s_role_vars(kubeconfig: Path, volumes: Path) -> dict:
    """The kubernetes role's variables of tests/k8s/test_stage_b_nodes.py: agents on either of the
    harness's two nodes, their claims on hostPath volumes both nodes mount."""
    return {
        **k8s_node.shared_role_vars(K8S_NS, volumes, IMAGE),
        "nanoclaw_kubernetes_kubeconfig": str(kubeconfig),
        "ansible_python_interpreter": str(venv_bin() / "python"),
    }


def k8s_floor_runs(kubectl: list[str], runs: int) -> list[float]:
    """A Job running ``true`` in the fixture agent image (a namespace of its own, no PSA labels),
    timed from ``kubectl create job`` until ``kubectl delete --cascade=foreground --wait`` returned."""
    samples = []
    for index in range(runs + 1):
        name = f"bench-floor-{index}"
        started = time.monotonic()
        for argv in (
            ["create", "job", name, f"--image={IMAGE}", "--", "true"],
            ["wait", "--for=condition=complete", f"job/{name}", "--timeout=180s"],
            ["delete", "job", name, "--cascade=foreground", "--wait"],
        ):
            proc = subprocess.run([*kubectl, "-n", K8S_FLOOR_NS, *argv], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise HarnessError(f"floor Job: kubectl {' '.join(argv)} failed: {proc.stderr.strip()[-300:]}")
        elapsed = time.monotonic() - started
        if index:  # the first one warms the node (image, sandbox) and is not counted
            samples.append(elapsed)
    return samples


def k8s_converge(role_vars: dict, log_name: str, what: str = "") -> None:
    """tests/k8s/play_kubernetes.yml with ``role_vars``; its output in tests/output/``log_name``."""
    wall, _output, rc = ansible_playbook(
        ["-i", "localhost,", "-e", json.dumps(role_vars), str(REPO / "tests" / "k8s" / "play_kubernetes.yml")],
        log_file=OUTPUT / log_name,
    )
    if rc != 0:
        raise HarnessError(f"the kubernetes role {what} failed (rc {rc}); log in tests/output/{log_name}")
    log(f"kubernetes role {what} converged in {wall:.1f} s")


def k8s_warm_runs(cluster: k8s.Cluster, engine: Engine, role_vars: dict, volumes: Path, *, runs: int, workdir: Path) -> dict:
    """The same sessions from the role's warm pool (agent_smoke_job ``warm: true``), one at a time, each
    once two members run: claim -> parsed. A warm agent was started without the IPC wait of the
    cold runs' env, so the module's IPC round trip (``ipc_path``) ends it."""
    k8s_converge(role_vars, "bench-kubernetes-warm-role.log", "with a warm pool of 2")
    args = {k: v for k, v in engine.module_args.items() if k != "env"}
    warm = Engine(
        engine.key + "-warm",
        engine.title,
        engine.cli,
        {**args, "warm": True, "ipc_path": str(volumes / K8S_NS / "nanoclaw-ipc-main")},
        module=engine.module,
    )
    timings = []
    for index in range(runs + 1):
        deadline = time.monotonic() + 120
        while True:
            pods = json.loads(
                cluster.kubectl("get", "pods", "-n", K8S_NS, "-l", "nanoclaw.dev/warm=main,!nanoclaw.dev/claimed", "-o", "json").stdout
            )["items"]
            running = [p for p in pods if any("running" in (s.get("state") or {}) for s in p["status"].get("containerStatuses", []))]
            if len(running) >= 2:
                break
            if time.monotonic() > deadline:
                raise HarnessError(f"the warm pool has {len(running)} of 2 members running after 120 s")
            time.sleep(0.2)
        sample = smoke_runs(warm, 1, 1, workdir)[0][0]
        if index:  # the first one warms the path and is not counted
            timings.append(sample)
    return {"agent": summary([t["create_to_parsed"] for t in timings]), "total": summary([t["total"] for t in timings]), "raw": timings}


def k8s_title(cluster: k8s.Cluster) -> str:
    """The row's title from what the node reports, e.g. "Kubernetes Job (harness node: containerd 1.6, kubelet v1.33)"."""
    info = json.loads(cluster.kubectl("get", "node", k8s_node.NODE_NAME, "-o", "json").stdout)["status"]["nodeInfo"]
    runtime, _sep, version = info["containerRuntimeVersion"].partition("://")
    minor = ".".join(re.split(r"[^0-9]+", version)[:2])
    kubelet = ".".join(info["kubeletVersion"].split(".")[:2])
    return f"Kubernetes Job (harness node: {runtime} {minor}, kubelet {kubelet})"


def bench_kubernetes(runs: int, rounds: int, workdir: Path) -> tuple[dict, dict]:
    """The harness's real cluster and node (as ``./run k8s:b``), the kubernetes role laid down as
    tests/k8s/test_stage_b.py does, then agent_smoke_job against a ``true`` Job.
    Anything that stops it is reported as "not measured: <reason>", never estimated."""
    cluster = None
    node_started = False
    volumes = Path(tempfile.mkdtemp(prefix="nanoclaw-bench-k8s-"))
    try:
        try:
            log("kubernetes: starting the harness's control plane and node")
            cluster = k8s.start()
            node_started = True
            k8s_node.start(cluster)
        except (HarnessError, subprocess.CalledProcessError, OSError) as exc:
            reason = f"the harness's cluster did not start: {' '.join(str(exc).split())[:300]}"
            log(f"not measuring kubernetes: {reason}")
            return ({"title": K8S_TITLE, "not_measured": reason}, {"title": K8S_TITLE, "not_measured": reason})
        title = k8s_title(cluster)
        log("kubernetes: laying down the kubernetes role (tests/k8s/play_kubernetes.yml)")
        role_vars = k8s_role_vars(cluster.admin_kubeconfig, k8s_node.make_local_volumes(volumes, K8S_NS))
        k8s_converge(role_vars, "bench-kubernetes-role.log")
        cluster.kubectl("create", "namespace", K8S_FLOOR_NS)
        deadline = time.monotonic() + 60
        while cluster.kubectl("-n", K8S_FLOOR_NS, "get", "serviceaccount", "default", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise HarnessError(f"no default ServiceAccount in {K8S_FLOOR_NS} after 60 s")
            time.sleep(0.5)
        engine = Engine(
            "kubernetes",
            title,
            [str(cluster.bin / "kubectl"), f"--kubeconfig={cluster.admin_kubeconfig}"],
            {
                "kubeconfig": str(cluster.admin_kubeconfig),
                "namespace": K8S_NS,
                "group": "main",
                "timeout": 180,
                # agent_smoke_job writes no input/_close without ipc_path: the FIXTURE ends after its result.
                "env": {"NANOCLAW_FIXTURE_IPC_WAIT": "0"},
            },
            result_key="create_to_parsed",
            module="agent_smoke_job",
        )
        engine.floor = lambda n: k8s_floor_runs(engine.cli, n)
        cold, concurrent = bench_engine(engine, runs, rounds, workdir)
        cold["warm"] = k8s_warm_runs(
            cluster, engine, {**role_vars, "nanoclaw_kubernetes_warm_pool": 2}, volumes, runs=runs, workdir=workdir
        )
        return cold, concurrent
    finally:
        if node_started:
            k8s_node.stop(cluster)
        k8s.stop()
        shutil.rmtree(volumes, ignore_errors=True)


# ---------------------------------------------------------------- Ansible floors, agent_image, site.yml
FLOOR_LOCAL = """---
- name: Ansible floor (start, one module round trip)
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""

FLOOR_TARGET = """---
- name: Ansible floor (connect and gather facts, as site.yml starts)
  hosts: nanoclaw_hosts
  gather_facts: true
  tasks: []
"""

AGENT_IMAGE_PLAY = """---
- name: agent_image role (Docker, FIXTURE NanoClaw v1 checkout)
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: nanoclaw.provision.agent_image
      vars:
        nanoclaw_agent_image_project_dir: "{{ bench_checkout }}"
        nanoclaw_agent_image_engine: docker
        nanoclaw_agent_image_name: nanoclaw-bench-agent
        nanoclaw_agent_image_base_image: localhost/nanoclaw-fixture-base:debian12
"""


def bench_agent_image(workdir: Path) -> dict:
    """The agent_image role's first run (builds) and its no-change rerun, against the local-ping floor."""
    meta = fixture_repo.build()
    checkout = workdir / "nanoclaw-v1"
    shutil.rmtree(checkout, ignore_errors=True)
    run(["git", "clone", "-q", meta["v1"]["path"], str(checkout)], capture=True)
    play = workdir / "agent_image.yml"
    play.write_text(AGENT_IMAGE_PLAY)
    floor = workdir / "floor_local.yml"
    floor.write_text(FLOOR_LOCAL)
    local = ["-i", "localhost,", "-e", f"ansible_python_interpreter={venv_bin() / 'python'}"]
    # Start from "not built": an image of an earlier benchmark run would make the first run a no-change one.
    run(["docker", "image", "rm", "-f", "nanoclaw-bench-agent:latest"], check=False, capture=True, quiet=True)
    ids = run(["docker", "images", "-q", "nanoclaw-bench-agent"], check=False, capture=True, quiet=True).stdout.split()
    if ids:
        run(["docker", "image", "rm", "-f", *ids], check=False, capture=True, quiet=True)
    floor_wall, output, rc = ansible_playbook([*local, str(floor)])
    if rc != 0:
        raise HarnessError(f"Ansible floor failed:\n{output[-2000:]}")
    result: dict = {"floor": floor_wall}
    for label in ("first", "rerun"):
        wall, output, rc = ansible_playbook([*local, "-e", f"bench_checkout={checkout}", str(play)])
        if rc != 0:
            raise HarnessError(f"agent_image ({label} run) failed:\n{output[-3000:]}")
        result[label] = {"wall": wall, "changed": recap(output).get("localhost", {}).get("changed")}
    return result


# The Docker row's target shares this machine's network namespace (to reach the loopback
# registries): its dockerd gets a bridge of the benchmark's own (tests/harness/demo.py makes it)
# and no iptables rules, so the machine's docker0 and firewall stay untouched.
DOCKER_BRIDGE = "ncbench0"
DOCKER_BRIDGE_ADDRESS = "10.252.0.1/24"
DOCKER_DAEMON_OPTIONS = {"bridge": DOCKER_BRIDGE, "iptables": False}


def site_inventory(source: Path, name: str, runtime: str, ssh: dict | None = None) -> dict:
    """The source inventory's nanoclaw_hosts variables, with this target as the only host.

    With ``ssh`` (port, key) the host is reached over SSH, as users run site.yml (ansible.cfg
    turns pipelining on); else over the Podman connection the harness uses.

    The demo's group_vars find fixture.json relative to the inventory's directory; the copy
    here lives elsewhere, so the host names it by its absolute path."""
    data = load_yaml(source / "hosts.yml") or {}
    group = data.get("nanoclaw_hosts") or {}
    host = dict(group.get("vars") or {})
    # The source's host of this runtime (else its first), with its host_vars: the demo's Docker
    # host names the compat check this test machine cannot pass (nanoclaw_site_compat_not_required).
    hosts = group.get("hosts") or {}
    demo_name = next((n for n, v in hosts.items() if (v or {}).get("nanoclaw_runtime") == runtime), next(iter(hosts), None))
    host.update(hosts.get(demo_name) or {})
    host_vars = source / "host_vars" / f"{demo_name}.yml"
    if demo_name and host_vars.is_file():
        host.update(load_yaml(host_vars) or {})
    for key in ("ansible_host", "ansible_port", "ansible_user"):
        host.pop(key, None)
    host.update(
        {
            "ansible_python_interpreter": "/usr/bin/python3",
            "nanoclaw_runtime": runtime,
            "__demo_fixture": f"{{{{ lookup('ansible.builtin.file', '{fixture_repo.META}') | from_json }}}}",
            "__demo_upstream": f"{{{{ lookup('ansible.builtin.file', '{demo.UPSTREAM_JSON}') | from_json }}}}",
            # A repository of its own in the shared push registry: the demo (./run site) pushes the same
            # tags of another build to demo/, and each would see the other's push as a change.
            "nanoclaw_agent_image_registry_namespace": f"bench/{runtime}",
        }
    )
    if ssh:
        host.update(
            {
                "ansible_connection": "ssh",
                "ansible_host": "127.0.0.1",
                "ansible_port": ssh["port"],
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(ssh["key"]),
                # A disposable target made for this run: its host key is new every time.
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            }
        )
    else:
        host["ansible_connection"] = "containers.podman.podman"
    if runtime == "docker":
        host.update(
            {
                # docker.io through the pre-seeded mirror (its CA: nanoclaw_site_registry_cas, /etc/docker/certs.d).
                "nanoclaw_docker_registry_mirrors": ["https://{{ __demo_mirror }}"],
                "nanoclaw_docker_daemon_options": DOCKER_DAEMON_OPTIONS,
                # Build steps use the host network (the daemon's bridge has no NAT), as agent_image_docker does.
                "nanoclaw_agent_image_build_network": "host",
            }
        )
    return {"nanoclaw_hosts": {"hosts": {name: host}}}


# Each site.yml target gets an sshd of its own on loopback (the targets share this machine's
# network namespace), on a port apart from the EE test's.
SITE_SSH_PORTS = {"podman": 22041, "docker": 22042}
MITOGEN_VERSION = "0.3.54"
TASK_HEAD = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.*)\] \**$")
TASK_CLOCK = re.compile(r"\((\d+):(\d+):(\d+(?:\.\d+)?)\)\s+\d+:\d+:\d+\.\d+ \*+\s*$")
TASK_STATUS = re.compile(r"^(ok|changed|skipping|failed|fatal|included): \[(?P<host>[^\]]+)\]")


def role_stats(output: str, host: str) -> dict[str, dict]:
    """Per role (``(play)`` for a playbook's own tasks): tasks that ran on ``host`` (ok or changed,
    for a loop: any item), tasks skipped, and seconds, from ansible-playbook output with
    profile_tasks, which prints under each task's header the time the task before took (and the
    last task's under TASKS RECAP)."""
    tasks: list[dict] = []
    clock_for: dict | None = None
    for line in output.splitlines():
        head = TASK_HEAD.match(line)
        if head or line.startswith("TASKS RECAP"):
            clock_for = tasks[-1] if tasks else None
            if head:
                name = head.group("name")
                tasks.append({"role": name.split(" : ", 1)[0] if " : " in name else "(play)", "status": set(), "seconds": 0.0})
            continue
        clock = TASK_CLOCK.search(line)
        if clock:
            if clock_for is not None:
                clock_for["seconds"] = int(clock.group(1)) * 3600 + int(clock.group(2)) * 60 + float(clock.group(3))
            clock_for = None
            continue
        status = TASK_STATUS.match(line)
        if status and tasks and status.group("host") == host:
            tasks[-1]["status"].add(status.group(1))
    stats: dict[str, dict] = {}
    for task in tasks:
        row = stats.setdefault(task["role"], {"ran": 0, "skipped": 0, "seconds": 0.0})
        if task["status"] & {"ok", "changed"}:
            row["ran"] += 1
        elif "skipping" in task["status"]:
            row["skipped"] += 1
        row["seconds"] = round(row["seconds"] + task["seconds"], 3)
    return stats


def mitogen_strategy_dir() -> Path:
    """Mitogen for Ansible (PyPI ``mitogen``), installed for this run only; its strategy plugins' directory."""
    target = WORK / f"mitogen-{MITOGEN_VERSION}"
    plugins = target / "ansible_mitogen" / "plugins" / "strategy"
    if not plugins.is_dir():
        run([str(venv_bin() / "pip"), "install", "-q", "--no-deps", "--target", str(target), f"mitogen=={MITOGEN_VERSION}"])
    return plugins


def baseline_collections(workdir: Path, ref: str) -> tuple[Path, str]:
    """A collections path holding nanoclaw.provision at git ``ref`` (a worktree), and its commit."""
    commit = run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], capture=True, quiet=True, cwd=REPO).stdout.strip()
    tree = workdir / "baseline"
    if tree.exists():
        run(["git", "worktree", "remove", "--force", str(tree)], check=False, capture=True, quiet=True, cwd=REPO)
    run(["git", "worktree", "add", "--detach", str(tree), commit], capture=True, quiet=True, cwd=REPO)
    collections = workdir / "baseline-collections"
    link = collections / "ansible_collections" / "nanoclaw" / "provision"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(tree)
    return collections, commit


def bench_site(runtime: str, workdir: Path, meta: dict, baseline: str | None = None) -> dict:
    """site.yml on a fresh Debian 13 target (host network, the demo's fixtures), over SSH with
    pipelining: first converge, the no-change rerun, the same rerun in check mode and with
    Mitogen, over the harness's Podman connection, and with the collection at ``baseline``."""
    source = Path(os.environ.get("NANOCLAW_BENCH_INVENTORY", REPO / "inventories" / "demo"))
    name = f"nanoclaw-bench-{runtime}"
    inv_dir = workdir / f"inventory-{runtime}"
    shutil.rmtree(inv_dir, ignore_errors=True)
    inv_dir.mkdir(parents=True)
    if (source / "group_vars").is_dir():
        shutil.copytree(source / "group_vars", inv_dir / "group_vars")
    key = ee.ssh_key()
    port = SITE_SSH_PORTS.get(runtime, 22049)
    ssh_inventory = inv_dir / "ssh.yml"
    podman_inventory = inv_dir / "podman.yml"
    ssh_inventory.write_text(json.dumps(site_inventory(source, name, runtime, {"port": port, "key": key})))
    podman_inventory.write_text(json.dumps(site_inventory(source, name, runtime)))
    floor = workdir / "floor_target.yml"
    floor.write_text(FLOOR_TARGET)
    site = str(REPO / "playbooks" / "site.yml")
    services.remove_container(name)
    result: dict = {"target": name, "image": demo.IMAGE.name, "connection": "ssh", "runs": {}}
    network = demo.bridge(DOCKER_BRIDGE, DOCKER_BRIDGE_ADDRESS) if runtime == "docker" else contextlib.nullcontext()
    mitogen = mitogen_strategy_dir()
    with network:
        try:
            services.ensure_demo_target(name, demo.IMAGE.name, label="nanoclaw.provision=bench", host_network=True)
            source_repo = upstream.mirror()
            # The pins and the prebuilt agent image the demo inventory pulls (pull mode), as ./run site writes them.
            demo.write_upstream_json(source_repo, demo.push_agent_image())
            demo.prepare_target(meta, name, source_repo)
            if runtime == "docker":
                demo.write_daemon_json(name, DOCKER_DAEMON_OPTIONS)
            ee.ensure_sshd(name, key, port)
            # A disposable target made for this run: a new host key every time (Mitogen's SSH reads
            # host_key_checking, not the ssh options of the inventory).
            ssh_env = {"ANSIBLE_HOST_KEY_CHECKING": "False"}
            # (label, inventory, playbook, extra argv, extra environment)
            plan: list[tuple[str, Path, str, list[str], dict]] = [
                ("floor", ssh_inventory, str(floor), [], ssh_env),
                ("floor_podman", podman_inventory, str(floor), [], {}),
                ("first", ssh_inventory, site, [], ssh_env),
                ("rerun", ssh_inventory, site, [], ssh_env),
                ("check", ssh_inventory, site, ["--check"], ssh_env),
                (
                    "mitogen",
                    ssh_inventory,
                    site,
                    [],
                    {**ssh_env, "ANSIBLE_STRATEGY_PLUGINS": str(mitogen), "ANSIBLE_STRATEGY": "mitogen_linear"},
                ),
                ("podman", podman_inventory, site, [], {}),
            ]
            if baseline:
                collections, commit = baseline_collections(workdir, baseline)
                result["baseline"] = {"ref": baseline, "commit": commit}
                plan.append(
                    (
                        "baseline",
                        ssh_inventory,
                        str(workdir / "baseline" / "playbooks" / "site.yml"),
                        [],
                        {"ANSIBLE_COLLECTIONS_PATH": str(collections)},
                    )
                )
            for label, inventory, playbook, extra, env in plan:
                log_file = OUTPUT / f"bench-site-{runtime}-{label}.log"
                log(f"site.yml bench ({label}) on {name}; output in {log_file}")
                wall, output, rc = ansible_playbook(["-i", str(inventory), playbook, *extra], env={**PROFILE_ENV, **env}, log_file=log_file)
                counts = recap(output).get(name, {})
                entry = {"wall": wall, "changed": counts.get("changed"), "rc": rc, "failed": counts.get("failed")}
                if playbook != str(floor):
                    entry["roles"] = role_stats(output, name)
                result["runs"][label] = entry
                if label.startswith("floor"):
                    result[label] = wall
                if rc != 0:
                    result["error"] = f"site.yml {label} run failed (rc {rc}); log in tests/output/{log_file.name}"
                    if label in ("floor", "first"):
                        break
            # The keys the report and older raw data share.
            result["first"] = result["runs"].get("first", {})
            result["rerun"] = result["runs"].get("rerun", {})
        finally:
            # The target (and its dockerd) goes before the bridge it uses.
            services.remove_container(name)
            if baseline:
                run(["git", "worktree", "remove", "--force", str(workdir / "baseline")], check=False, capture=True, quiet=True, cwd=REPO)
    return result


# ---------------------------------------------------------------- machine
def machine_info() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        cgroup = "v2 (unified)"
    elif Path("/sys/fs/cgroup/unified").exists():
        cgroup = "v1 (hybrid: v1 controllers, v2 mounted at /sys/fs/cgroup/unified)"
    else:
        cgroup = "v1 (legacy)"

    def out(argv: list[str]) -> str:
        proc = run(argv, check=False, capture=True, quiet=True)
        return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else "not available"

    distro = "unknown"
    with contextlib.suppress(OSError):
        distro = re.search(r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text(), re.M).group(1)
    commit = out(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    dirty = run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], check=False, capture=True, quiet=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": distro,
        "cgroup": cgroup,
        "docker": out(["docker", "version", "--format", "{{.Server.Version}}"]),
        "podman": out(["podman", "version", "--format", "{{.Client.Version}}"]),
        "runc": out(["runc", "--version"]),
        "ansible_core": out([str(venv_bin() / "python"), "-c", "import ansible; print(ansible.__version__)"]),
        "python": platform.python_version(),
        "commit": commit,
        "dirty": bool(dirty),
        "site_yml": out(["git", "-C", str(REPO), "log", "-1", "--format=%h %s", "--", "playbooks/site.yml"]),
        "loadavg_start": os.getloadavg(),
    }


# ---------------------------------------------------------------- report
def loadavg(values: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)


def fmt_s(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def cell_text(text: str) -> str:
    """One line of text that cannot break a Markdown table row."""
    return " ".join(str(text).split()).replace("|", "/")


def site_image(data: dict) -> str:
    images_used = {row.get("image") for row in data["site"].values() if row.get("image")}
    return ", ".join(sorted(images_used)) or "localhost/nanoclaw-target:debian13"


SITE_GOAL_SHARE = 0.15
SITE_GOAL_SECONDS = 30.0
SITE_CHECK_GOAL = 1.2


def _wall(run_: dict | None) -> str:
    if not run_:
        return "not run"
    return fmt_s(run_["wall"]) + ("" if run_.get("rc") == 0 else f" (FAILED, rc {run_.get('rc')})")


def render_site(data: dict) -> list[str]:
    """The site.yml section: the SSH rows against the goal, the other ways to rerun, tasks per role."""
    lines = [
        "",
        "## site.yml: first converge vs idempotent rerun",
        "",
        "`ansible-playbook playbooks/site.yml` against a fresh systemd target container per runtime, set up as `./run site`",
        f"sets up its demo target: the Debian 13 image (`{site_image(data)}`), privileged, in this machine's network",
        "namespace (to reach the harness's loopback registries), with the FIXTURE NanoClaw repository and Node tarball",
        "copied in; the variables of `inventories/demo` (pinned fixture commit, docker.io through the pre-seeded mirror,",
        "the image pushed to the TLS + htpasswd registry) and `nanoclaw_runtime` per row. The target runs sshd on loopback;",
        "site.yml reaches it **over SSH with pipelining** (`ansible.cfg`; OpenSSH's ControlPersist), as users run it.",
        "The first converge installs the runtime from Debian's archive, clones and builds NanoClaw, builds and pushes the",
        "agent image and runs the compat checks and the agent smoke test; the rerun, with the same command, must change",
        "nothing. For the docker row the target's dockerd uses a bridge of the benchmark's own",
        f"(`{DOCKER_BRIDGE}`, made before the target starts, deleted after) without iptables rules",
        "(`nanoclaw_docker_daemon_options`), so this machine's docker0 and firewall stay untouched. Floor: a play that only",
        "connects and gathers facts on the same target over the same connection.",
        "",
        f"Goal (issue 17): the no-change rerun within {SITE_GOAL_SHARE:.0%} of the first converge and {SITE_GOAL_SECONDS:.0f} s;",
        f"the same rerun with `--check` within {SITE_CHECK_GOAL}x of it.",
        "",
        "| runtime | floor | first converge | changed | rerun | changed | rerun / first | rerun / floor | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for runtime, row in data["site"].items():
        if "not_measured" in row:
            lines.append(f"| {runtime} | not measured: {cell_text(row['not_measured'])} | | | | | | | |")
            continue
        if "floor" not in row:
            lines.append(f"| {runtime} | failed: {cell_text(row.get('error', ''))} | | | | | | | |")
            continue
        first, rerun = row.get("first") or {}, row.get("rerun") or {}
        share = rerun["wall"] / first["wall"] if first.get("wall") and rerun.get("wall") else None
        met = (
            "met"
            if share is not None and share <= SITE_GOAL_SHARE and rerun["wall"] <= SITE_GOAL_SECONDS and rerun.get("changed") == 0
            else "**not met**"
        )
        lines.append(
            f"| {runtime} | {fmt_s(row['floor'])} | {_wall(first)} | {first.get('changed', '')} | {_wall(rerun)} "
            f"| {rerun.get('changed', '')} | {f'{share:.1%}' if share is not None else ''} "
            f"| {(format(rerun['wall'] / row['floor'], '.2f') + 'x') if rerun.get('wall') else ''} | {met if share is not None else ''} |"
        )
    runs_of = {rt: row.get("runs") or {} for rt, row in data["site"].items()}
    if any(runs_of.values()):
        baseline = next((row["baseline"] for row in data["site"].values() if row.get("baseline")), None)
        lines += [
            "",
            "### The same rerun, other ways",
            "",
            "Right after the rerun above, on the same target: `--check`; Mitogen for Ansible's `mitogen_linear`",
            f"strategy (PyPI `mitogen` {MITOGEN_VERSION}, installed for the run only) over the same SSH; the harness's",
            "`containers.podman.podman` connection (`podman exec`, pipelined by `tests/harness/ansible_plugins`), against",
            "its own floor"
            + (
                f"; and the collection as it was at `{baseline['commit'][:10]}` (`--baseline {baseline['ref']}`, a git"
                " worktree), over the same SSH: *before* this collection's rerun work."
                if baseline
                else "."
            ),
            "",
            "| runtime | rerun (SSH) | --check | check / rerun | Mitogen | Mitogen / rerun | Podman connection (floor) "
            "| Podman / its floor |" + (" before (SSH) | rerun / before |" if baseline else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|---|" if baseline else ""),
        ]
        for runtime, runs in runs_of.items():
            rerun = runs.get("rerun")
            if not rerun:
                continue

            def ratio(other: dict | None, base: float) -> str:
                return f"{other['wall'] / base:.2f}x" if other and other.get("wall") and base else ""

            check, mito, pod, before = runs.get("check"), runs.get("mitogen"), runs.get("podman"), runs.get("baseline")
            floor_podman = data["site"][runtime].get("floor_podman")
            cells = [
                runtime,
                _wall(rerun),
                _wall(check) + (f", changed={check.get('changed')}" if check else ""),
                ratio(check, rerun["wall"]),
                _wall(mito) + (f", changed={mito.get('changed')}" if mito else ""),
                ratio(mito, rerun["wall"]),
                _wall(pod) + (f" ({fmt_s(floor_podman)})" if floor_podman else ""),
                ratio(pod, floor_podman or 0),
            ]
            if baseline:
                cells += [
                    _wall(before) + (f", changed={before.get('changed')}" if before else ""),
                    ratio(rerun, before["wall"]) if before else "",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "### Tasks per role in the no-change rerun",
            "",
            "Tasks that ran on the target (ok or changed), tasks skipped, and their seconds (profile_tasks), per role;",
            "`(play)` is site.yml's own tasks and fact gathering."
            + (" *before*: the collection at the baseline commit, on the same target." if baseline else ""),
            "",
        ]
        for runtime, runs in runs_of.items():
            after = (runs.get("rerun") or {}).get("roles") or {}
            before_roles = (runs.get("baseline") or {}).get("roles") or {}
            if not after:
                continue
            head = f"| {runtime}: role | ran | skipped | seconds |" + (
                " ran before | skipped before | seconds before |" if before_roles else ""
            )
            lines += [head, "|---|---|---|---|" + ("---|---|---|" if before_roles else "")]
            for role in sorted(set(after) | set(before_roles), key=lambda r: -(after.get(r) or {}).get("seconds", 0)):
                a, b = after.get(role) or {}, before_roles.get(role) or {}
                cells = [
                    role.replace("nanoclaw.provision.", ""),
                    str(a.get("ran", 0)),
                    str(a.get("skipped", 0)),
                    f"{a.get('seconds', 0):.1f}",
                ]
                if before_roles:
                    cells += [str(b.get("ran", 0)), str(b.get("skipped", 0)), f"{b.get('seconds', 0):.1f}"]
                lines.append("| " + " | ".join(cells) + " |")
            total = {k: sum(v.get(k, 0) for v in after.values()) for k in ("ran", "skipped", "seconds")}
            cells = ["**all**", str(total["ran"]), str(total["skipped"]), f"{total['seconds']:.1f}"]
            if before_roles:
                tb = {k: sum(v.get(k, 0) for v in before_roles.values()) for k in ("ran", "skipped", "seconds")}
                cells += [str(tb["ran"]), str(tb["skipped"]), f"{tb['seconds']:.1f}"]
            lines += ["| " + " | ".join(cells) + " |", ""]
    if any(row.get("error") for row in data["site"].values()):
        lines += ["", *[f"- {rt}: {row['error']}" for rt, row in data["site"].items() if row.get("error")]]
    return lines


def render(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# Performance",
        "",
        "Generated by `python3 -m benchmarks.run` (or `./run bench`); do not edit by hand."
        + (" **SMOKE RUN** (few samples): not for comparison." if data["smoke"] else ""),
        f"Measured at commit `{m['commit']}`{' with uncommitted changes' if m['dirty'] else ''}"
        f" (playbooks/site.yml last changed in `{m['site_yml']}`), {data['date']}, in {data['seconds']:.0f} s.",
        "",
        "Every figure is next to a floor measured in the same run on the same engine or target, and given as a ratio to",
        "it: absolute times depend on the machine (and this one is shared with other jobs), ratios much less.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['cores']} cores |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| OS, kernel | {m['os']}, {m['kernel']} |",
        f"| cgroup mode | {m['cgroup']} |",
        f"| Docker | {m['docker']} |",
        f"| Podman | {m['podman']} |",
        f"| runc | {m['runc']} |",
        f"| ansible-core, Python | {m['ansible_core']}, {m['python']} |",
        f"| load average at start / end | {loadavg(m['loadavg_start'])} / {loadavg(data['loadavg_end'])} |",
        "",
        f"## Agent cold start ({data['runs']} runs per engine)",
        "",
        "`nanoclaw.provision.agent_smoke` with the TEST FIXTURE agent image `localhost/nanoclaw-fixture-agent:ok` (v1 contract:",
        "JSON on stdin, five bind mounts, the result parsed from between the output markers), spawn → parsed result as the",
        "module measures it, and spawn → container gone (the module's `total`, after `--rm` removed it). Floor:",
        "`run --rm --entrypoint true IMAGE` with the same CLI, spawn → exit (which includes the removal). One warm-up",
        "run of each is not counted. The like-for-like ratio is *gone / floor*; *result / floor* is what a user waits",
        "for an answer, which can come before the floor's empty container is even removed.",
        "",
        "| engine | floor p50 | floor p95 | result p50 | result p95 | gone p50 | gone p95 "
        "| result / floor p50 | gone / floor p50 | gone / floor p95 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["cold"].values():
        if "unavailable" in row:
            error = row["unavailable"].replace("|", "/")
            lines.append(f"| {row['title']} | not measured: this engine could not run a container in this run: `{error}` |||||||||")
            continue
        if "not_measured" in row:
            lines.append(f"| {row['title']} | not measured: {cell_text(row['not_measured'])} |||||||||")
            continue
        f = row["floor"]
        for title, a, g in [
            (row["title"], row["agent"], row["total"]),
            *([(f"{row['title']}, warm pool", row["warm"]["agent"], row["warm"]["total"])] if row.get("warm") else []),
        ]:
            lines.append(
                f"| {title} | {fmt_s(f['p50'])} | {fmt_s(f['p95'])} | {fmt_s(a['p50'])} | {fmt_s(a['p95'])} "
                f"| {fmt_s(g['p50'])} | {fmt_s(g['p95'])} | {a['p50'] / f['p50']:.2f}x "
                f"| {g['p50'] / f['p50']:.2f}x | {g['p95'] / f['p95']:.2f}x |"
            )
    if "kubernetes" not in data["cold"] and data.get("kubernetes"):  # the raw data of an older run
        lines.append(f"| Kubernetes Job | not measured: {cell_text(data['kubernetes'])} |||||||||")
    if "kubernetes" in data["cold"]:
        lines += [
            "",
            "For the Kubernetes Job row the module is `nanoclaw.provision.agent_smoke_job`, against the harness's own",
            "two-node cluster (`./run k8s:b`: control plane and kubelets built from k8s.io/kubernetes, Debian's containerd),",
            "with the `nanoclaw.provision.kubernetes` role laid down as its stage B tests do (ReadWriteMany claims on hostPath",
            "volumes both nodes mount, no node pinned, the fixture image never pulled). *result* is the module's",
            "`create_to_parsed` (Job create request → the output's end marker read from the pod log), *gone* its `total`",
            "(until the Job and its pod are deleted). The *warm pool* row: the role converged again with",
            "`nanoclaw_kubernetes_warm_pool: 2`, each session (`warm: true`) started once two members run; *result* counts",
            "from the claim instead of the create request, and *gone* includes the IPC round trip that ends a warm agent.",
            "Floor: a Job running `true` in the same image in a namespace of its own, from `kubectl create job` through",
            "`kubectl wait --for=condition=complete` to `kubectl delete job --cascade=foreground --wait` returning (three",
            "kubectl processes, so the floor carries their start-up too). Its 5 concurrent agents land on both nodes.",
        ]
    lines += [
        "",
        f"## 5 concurrent agents vs one ({data['concurrent_rounds']} agents per host)",
        "",
        "The same module on 5 inventory hosts at once (forks=5, each host running its agents one after another), against",
        "one host. Latency is per agent (spawn → parsed result); throughput is agents per second of the whole",
        "`ansible-playbook` run (so it includes Ansible's per-call overhead, the same on both sides).",
        "",
        "| engine | 1 agent p50 | 5 at once p50 | 5 at once p95 | latency ratio (p50) | throughput 1 | throughput 5 | throughput ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in data["concurrent"].values():
        if "unavailable" in row or "not_measured" in row:
            lines.append(f"| {row['title']} | not measured (see above) |||||||")
            continue
        one, five = row["one"], row["five"]
        lines.append(
            f"| {row['title']} | {fmt_s(one['p50'])} | {fmt_s(five['p50'])} | {fmt_s(five['p95'])} | {five['p50'] / one['p50']:.2f}x "
            f"| {row['tput_one']:.2f}/s | {row['tput_five']:.2f}/s | {row['tput_five'] / row['tput_one']:.2f}x |"
        )
    ai = data.get("agent_image")
    lines += (
        []
        if ai is None
        else [
            "",
            "## agent_image role when nothing changed",
            "",
            "`nanoclaw.provision.agent_image` with Docker on this machine, building a FIXTURE NanoClaw v1 checkout",
            "(`tests/harness/fixture_repo.py`) FROM the locally imported Debian base; first run (builds), then the same run",
            "again. Floor: an `ansible-playbook` run of one `ansible.builtin.ping` on localhost.",
            "",
            "| run | wall | changed | ratio to floor |",
            "|---|---|---|---|",
            f"| floor (ping) | {fmt_s(ai['floor'])} | | 1.00x |",
            f"| first (build) | {fmt_s(ai['first']['wall'])} | {ai['first']['changed']} | {ai['first']['wall'] / ai['floor']:.2f}x |",
            f"| no-change rerun | {fmt_s(ai['rerun']['wall'])} | {ai['rerun']['changed']} | {ai['rerun']['wall'] / ai['floor']:.2f}x |",
        ]
    )
    if data["site"]:
        lines += render_site(data)
    lines += [
        "",
        "## Reproduce",
        "",
        "```console",
        "./run bench            # or: python3 -m benchmarks.run [--runs N]",
        "./run bench:smoke      # the short form (3 samples) for CI; writes tests/output/PERFORMANCE-smoke.md",
        "```",
        "",
        "Raw samples of the last run: `tests/output/bench.json` (not committed).",
        "",
    ]
    return "\n".join(lines)


# The report's sections each part writes (a section is a "## " heading and what follows it).
PART_SECTIONS = {
    "engines": ("## Agent cold start", "## 5 concurrent agents"),
    "kubernetes": ("## Agent cold start", "## 5 concurrent agents"),
    "agent_image": ("## agent_image role",),
    "site": ("## site.yml",),
}


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading line, the section's text including the heading) in order; the preamble has heading ''."""
    out: list[tuple[str, str]] = []
    for chunk in re.split(r"(?m)^(?=## )", text):
        heading = chunk.split("\n", 1)[0] if chunk.startswith("## ") else ""
        out.append((heading, chunk))
    return out


def _table(lines: list[str]) -> tuple[int, int] | None:
    """The first markdown table's data rows in ``lines``: (first row, end) or None."""
    sep = next((i for i, line in enumerate(lines) if line.startswith("|---")), None)
    if sep is None:
        return None
    end = sep + 1
    while end < len(lines) and lines[end].startswith("| "):
        end += 1
    return sep + 1, end


def _keep_rows(new_body: str, old_body: str, note: str) -> str:
    """``new_body`` with the previous report's table rows it has no row of the same title for,
    first, each title marked with ``note`` (once)."""

    def title(row: str) -> str:
        return row.split("|")[1].strip()

    new_lines, old_lines = new_body.split("\n"), old_body.split("\n")
    new_rows, old_rows = _table(new_lines), _table(old_lines)
    if new_rows is None or old_rows is None:
        return new_body
    titles = {title(r) for r in new_lines[new_rows[0] : new_rows[1]]}
    kept = []
    for row in old_lines[old_rows[0] : old_rows[1]]:
        if title(row) in titles:
            continue
        cells = row.split("|")
        if "*(kept from" not in cells[1]:
            cells[1] = f" {title(row)} {note} "
        kept.append("|".join(cells))
    new_lines[new_rows[0] : new_rows[0]] = kept
    return "\n".join(new_lines)


def keep_sections(new: str, old: str, measured: set[str]) -> str:
    """A run of some parts only (``--only``): the sections of the parts it did not measure come
    from the previous report, marked as such, instead of being left out."""
    kept_prefixes = {
        prefix
        for part, prefixes in PART_SECTIONS.items()
        for prefix in prefixes
        if not any(other in measured for other, others in PART_SECTIONS.items() if prefix in others)
    }
    commit = re.search(r"Measured at commit `([0-9a-f]+)`", old)
    date = re.search(r"`\), ([0-9-]+ [0-9:]+ UTC), in", old)
    note = (
        f"*Kept from the previous report (commit `{commit.group(1)[:10] if commit else '?'}`, "
        f"{date.group(1) if date else '?'}): this run (`--only {','.join(sorted(measured))}`) did not measure it.*"
    )
    order = ["", "## Machine", *dict.fromkeys(p for ps in PART_SECTIONS.values() for p in ps), "## Reproduce"]

    def by_prefix(text: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for heading, body in _sections(text):
            prefix = next((p for p in order if p and heading.startswith(p)), heading)
            found.setdefault(prefix, body)
        return found

    new_parts, old_parts = by_prefix(new), by_prefix(old)
    # A section two parts write (the engines' and the cluster's rows of one table), measured for one:
    # the other's rows come from the previous report, marked as such.
    shared = {
        prefix for part, prefixes in PART_SECTIONS.items() if part not in measured for prefix in prefixes if prefix not in kept_prefixes
    }
    row_note = f"*(kept from `{commit.group(1)[:10] if commit else '?'}`, {date.group(1) if date else '?'})*"
    out: list[str] = []
    for prefix in order:
        if prefix in shared and prefix in new_parts and prefix in old_parts:
            # Rows of a section the previous report had kept in turn name the run that measured them.
            earlier = re.search(r"\*Kept from the previous report \(commit `([0-9a-f?]+)`, ([^)]*)\)", old_parts[prefix])
            rows_note = f"*(kept from `{earlier.group(1)}`, {earlier.group(2)})*" if earlier else row_note
            out.append(_keep_rows(new_parts[prefix], old_parts[prefix], rows_note))
        elif prefix in kept_prefixes:
            if prefix in old_parts and "*Kept from the previous report" in old_parts[prefix]:
                out.append(old_parts[prefix])  # kept before: it still says from which run
            elif prefix in old_parts:
                title, newline, rest = old_parts[prefix].partition("\n")
                out.append(f"{title}{newline}\n{note}\n{rest}")
        elif prefix in new_parts:
            out.append(new_parts[prefix])
    return "".join(out)


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="few samples, writes tests/output/PERFORMANCE-smoke.md")
    parser.add_argument("--runs", type=int, help="samples per engine for the cold start (default 20, smoke 3)")
    parser.add_argument("--output", type=Path, help="where to write the report")
    parser.add_argument(
        "--engines",
        default="docker,podman,podman-rootless",
        help="comma-separated subset of docker, podman, podman-rootless (default: all)",
    )
    parser.add_argument("--skip-site", action="store_true", help="leave out the site.yml and agent_image measurements")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated subset of the parts to measure: {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--site-runtimes",
        default=",".join(SITE_RUNTIMES),
        help=f"comma-separated nanoclaw_runtime values for the site.yml rows (default: {','.join(SITE_RUNTIMES)})",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also rerun site.yml with the collection at this git ref (a worktree), for the before/after rows",
    )
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: render the report again from a run's raw data (tests/output/bench.json)"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        output = args.output or (OUTPUT / "PERFORMANCE-smoke.md" if data["smoke"] else REPO / "docs" / "PERFORMANCE.md")
        output.write_text(render(data))
        log(f"wrote {output} from {args.from_json}")
        return 0
    runs = args.runs or (3 if args.smoke else 20)
    rounds = 1 if args.smoke else 4
    output = args.output or (OUTPUT / "PERFORMANCE-smoke.md" if args.smoke else REPO / "docs" / "PERFORMANCE.md")
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/run.py prepares engines and target containers: run it as root (like ./run)")
    if not args.smoke and runs < 20:
        raise SystemExit("a full run needs --runs >= 20 (use --smoke for a short one)")
    started = time.monotonic()
    ensure_venv()
    ensure_collection_link()
    images.ensure_podman_image(images.TARGETS[0])
    WORK.mkdir(parents=True, exist_ok=True)
    data: dict = {
        "smoke": args.smoke,
        "runs": runs,
        "concurrent_rounds": rounds,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"--only: unknown part(s) {', '.join(sorted(unknown))} (choose from {', '.join(PARTS)})")
    if args.skip_site:
        parts -= {"agent_image", "site"}
    site_runtimes = [r.strip() for r in args.site_runtimes.split(",") if r.strip()]
    try:
        wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
        engines = [e for e in prepare_engines() if e.key in wanted] if "engines" in parts else []
        data["machine"] = machine_info()
        with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-", dir=WORK) as tmp:
            workdir = Path(tmp)
            data["cold"], data["concurrent"] = {}, {}
            retry: list[Engine] = []
            for attempt, batch in enumerate((engines, retry)):
                for engine in list(batch):
                    # Rootless networking (slirp4netns) needs /dev/net/tun as a normal host has it; only for that engine's runs.
                    usable_tun = device_mode("/dev/net/tun", 0o666) if engine.key == "podman-rootless" else contextlib.nullcontext()
                    with usable_tun:
                        if attempt and engine.key == "docker" and "dockerd" in services._STARTED:
                            # Our own dockerd, restarted: it makes docker0 again.
                            services.stop_daemon("dockerd")
                            services._STARTED.remove("dockerd")
                            fixtures.ensure_dockerd()
                        problem = engine_problem(engine)
                        if problem:
                            log(f"not measuring {engine.key}: {problem}")
                            data["cold"][engine.key] = data["concurrent"][engine.key] = {"title": engine.title, "unavailable": problem}
                            continue
                        try:
                            data["cold"][engine.key], data["concurrent"][engine.key] = bench_engine(engine, runs, rounds, workdir)
                        except HarnessError as exc:
                            # The machine is shared: e.g. a Docker daemon started with "bridge": "none" in this network
                            # namespace (a target sharing it) deletes docker0 at its start, under this run's feet.
                            error = " ".join(str(exc).split())
                            log(f"{engine.key} failed mid-run: {error[-500:]}")
                            data["cold"][engine.key] = data["concurrent"][engine.key] = {
                                "title": engine.title,
                                "unavailable": f"failed mid-run{' twice' if attempt else ''}: {error[-300:]}",
                            }
                            if not attempt:
                                log(f"{engine.key}: trying again after the other engines")
                                retry.append(engine)
            if "kubernetes" in parts:
                OUTPUT.mkdir(parents=True, exist_ok=True)
                try:
                    data["cold"]["kubernetes"], data["concurrent"]["kubernetes"] = bench_kubernetes(runs, rounds, workdir)
                except HarnessError as exc:
                    reason = f"the run on the harness's cluster failed: {' '.join(str(exc).split())[:400]}"
                    log(f"kubernetes: {reason}")
                    data["cold"]["kubernetes"] = data["concurrent"]["kubernetes"] = {"title": K8S_TITLE, "not_measured": reason}
            data["site"] = {}
            if "agent_image" in parts:
                log("agent_image role: first run and no-change rerun")
                data["agent_image"] = bench_agent_image(workdir)
            if "site" in parts and site_runtimes:
                # What ./run site gives its demo target (cli.stage_site): the loopback registries
                # (reused when they already answer) and the FIXTURE repository and Node tarball.
                registry.ensure_registries()
                meta = fixture_repo.build()
                images.ensure_podman_image(demo.IMAGE)
                for runtime in site_runtimes:
                    log(f"site.yml first converge and rerun, nanoclaw_runtime={runtime}")
                    data["site"][runtime] = bench_site(runtime, workdir, meta, args.baseline)
    finally:
        services.stop_started()
    data["loadavg_end"] = os.getloadavg()
    data["seconds"] = time.monotonic() - started
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / ("bench-smoke.json" if args.smoke else "bench.json")).write_text(json.dumps(data, indent=2, default=str) + "\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    text = render(data)
    if parts != set(PARTS) and output.exists():
        text = keep_sections(text, output.read_text(), parts)
    output.write_text(text)
    log(f"wrote {output} ({data['seconds']:.0f} s)")
    failed = [rt for rt, row in data["site"].items() if row.get("error")]
    if failed:
        log("site.yml failed for: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
