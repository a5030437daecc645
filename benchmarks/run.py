"""Measure what NanoClaw users wait for, and write docs/PERFORMANCE.md.

    python3 benchmarks/run.py             # the full run (>= 20 samples each), writes docs/PERFORMANCE.md
    python3 benchmarks/run.py --smoke     # a short run (CI), writes tests/output/PERFORMANCE-smoke.md
    ./run bench   /   ./run bench:smoke   # the same through the harness

Run it as root on a Debian/Ubuntu machine (like ./run): it sets up what it measures with the
test harness (project virtualenv, Docker and Podman, the rootless user nanoclaw-it, the TEST
FIXTURE agent images, fresh systemd target containers) and uses no other tool.

Every figure is a ratio against a floor measured in the same run, on the same engine:
- agent cold start: nanoclaw.provision.agent_smoke, spawn -> parsed result (the module's own
  ``timings.spawn_to_result``), against ``run --rm --entrypoint true IMAGE`` (the fixture agent
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import fixture_repo, fixtures, images, services  # noqa: E402
from tests.harness.common import CACHE, HarnessError, log, run  # noqa: E402
from tests.harness.setup_env import ensure_collection_link, ensure_venv, load_yaml, tool_env, venv_bin  # noqa: E402

OUTPUT = REPO / "tests" / "output"
IMAGE = f"{fixtures.AGENT}:ok"
WORK = CACHE / "bench"
SITE_RUNTIMES = ["podman", "docker"]


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


def ansible_playbook(argv: list[str], cwd: Path = REPO, env: dict | None = None) -> tuple[float, str, int]:
    """Run ansible-playbook from the project venv; returns (wall seconds, output, rc)."""
    full_env = {**os.environ, **tool_env(), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", **(env or {})}
    started = time.monotonic()
    proc = subprocess.run([str(venv_bin() / "ansible-playbook"), *argv], cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    return time.monotonic() - started, proc.stdout + proc.stderr, proc.returncode


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
- name: agent_smoke, {runs} times per host
  hosts: bench_agents
  gather_facts: false
  tasks:
    - name: Start one agent and parse its result
      nanoclaw.provision.agent_smoke: "{{{{ bench_args }}}}"
      loop: "{{{{ range(bench_runs | int) | list }}}}"
      register: bench_smoke
    - name: Save the timings
      ansible.builtin.copy:
        content: "{{{{ bench_smoke.results | map(attribute='timings') | list | to_json }}}}"
        dest: "{{{{ bench_out }}}}/{{{{ inventory_hostname }}}}.json"
        mode: "0600"
"""


def smoke_runs(engine: Engine, runs: int, hosts: int, workdir: Path) -> tuple[list[dict], float]:
    """agent_smoke ``runs`` times on each of ``hosts`` localhost aliases at once; (the module's timings, wall)."""
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
    playbook.write_text(SMOKE_PLAY.format(runs=runs))
    extra = out / "vars.json"
    extra.write_text(json.dumps({"bench_args": {"image": IMAGE, **engine.module_args}, "bench_runs": runs, "bench_out": str(out)}))
    wall, output, rc = ansible_playbook(["-i", str(inventory), "-f", str(hosts), "-e", f"@{extra}", str(playbook)], env=engine.env)
    if rc != 0:
        raise HarnessError(f"agent_smoke on {engine.key} ({hosts} at once) failed:\n{output[-3000:]}")
    samples = []
    for i in range(1, hosts + 1):
        samples += json.loads((out / f"bench-agent-{i}.json").read_text())
    return samples, wall


def bench_engine(engine: Engine, runs: int, rounds: int, workdir: Path) -> tuple[dict, dict]:
    """Cold start (floor and agent_smoke, ``runs`` each) and 5 concurrent agents vs one (``rounds`` each) on one engine."""
    log(f"cold start on {engine.key}: floor x{runs}")
    floor = floor_runs(engine, runs)
    log(f"cold start on {engine.key}: agent_smoke x{runs}")
    smoke_runs(engine, 1, 1, workdir)  # warm-up, not counted
    timings = smoke_runs(engine, runs, 1, workdir)[0]
    agent = [t["spawn_to_result"] for t in timings]
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
    one = [t["spawn_to_result"] for t in one_t]
    five = [t["spawn_to_result"] for t in five_t]
    concurrent = {
        "title": engine.title,
        "one": summary(one),
        "five": summary(five),
        "tput_one": len(one) / wall_1,
        "tput_five": len(five) / wall_5,
        "raw": {"one": one, "five": five, "wall_one": wall_1, "wall_five": wall_5},
    }
    return cold, concurrent


def kubernetes_job_status() -> str | None:
    """None when agent_smoke can run a Kubernetes Job and a cluster is given; else why not."""
    source = (REPO / "plugins" / "modules" / "agent_smoke.py").read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as doc_file:
        doc_file.write(source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])
        doc_file.flush()
        doc = load_yaml(Path(doc_file.name))
    choices = doc["options"]["engine"].get("choices", [])
    if "kubernetes" not in choices:
        return f"agent_smoke has no Kubernetes Job engine at this commit (engine choices: {', '.join(choices)})"
    return "agent_smoke has a kubernetes engine, but this script does not drive it yet"


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


def site_inventory(source: Path, name: str, runtime: str) -> dict:
    """The source inventory's nanoclaw_hosts variables, with this target as the only host."""
    data = load_yaml(source / "hosts.yml") or {}
    group = data.get("nanoclaw_hosts") or {}
    host = dict(group.get("vars") or {})
    host.update(next(iter((group.get("hosts") or {}).values()), None) or {})
    for key in ("ansible_host", "ansible_port", "ansible_user"):
        host.pop(key, None)
    host.update(
        {
            "ansible_connection": "containers.podman.podman",
            "ansible_python_interpreter": "/usr/bin/python3",
            "nanoclaw_runtime": runtime,
        }
    )
    return {"nanoclaw_hosts": {"hosts": {name: host}}}


def bench_site(runtime: str, workdir: Path) -> dict:
    """site.yml on a fresh target container: first converge, then the idempotent rerun."""
    source = Path(os.environ.get("NANOCLAW_BENCH_INVENTORY", REPO / "inventories" / "demo"))
    name = f"nanoclaw-bench-{runtime}"
    inv_dir = workdir / f"inventory-{runtime}"
    shutil.rmtree(inv_dir, ignore_errors=True)
    inv_dir.mkdir(parents=True)
    if (source / "group_vars").is_dir():
        shutil.copytree(source / "group_vars", inv_dir / "group_vars")
    (inv_dir / "hosts.yml").write_text(json.dumps(site_inventory(source, name, runtime)))
    floor = workdir / "floor_target.yml"
    floor.write_text(FLOOR_TARGET)
    services.remove_container(name)
    services.ensure_demo_target(name, images.TARGETS[0].name, label="nanoclaw.provision=bench")
    result: dict = {"target": name}
    try:
        wall, output, rc = ansible_playbook(["-i", str(inv_dir), str(floor)])
        if rc != 0:
            raise HarnessError(f"Ansible floor on {name} failed:\n{output[-2000:]}")
        result["floor"] = wall
        for label in ("first", "rerun"):
            wall, output, rc = ansible_playbook(["-i", str(inv_dir), str(REPO / "playbooks" / "site.yml")])
            counts = recap(output).get(name, {})
            result[label] = {"wall": wall, "changed": counts.get("changed"), "rc": rc, "failed": counts.get("failed")}
            if rc != 0:
                (workdir / f"site-{runtime}-{label}.log").write_text(output)
                result["error"] = f"site.yml {label} run failed (rc {rc}); log in {workdir / f'site-{runtime}-{label}.log'}"
                break
    finally:
        services.remove_container(name)
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


def render(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# Performance",
        "",
        "Generated by `python3 benchmarks/run.py` (or `./run bench`); do not edit by hand."
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
        f, a, g = row["floor"], row["agent"], row["total"]
        lines.append(
            f"| {row['title']} | {fmt_s(f['p50'])} | {fmt_s(f['p95'])} | {fmt_s(a['p50'])} | {fmt_s(a['p95'])} "
            f"| {fmt_s(g['p50'])} | {fmt_s(g['p95'])} | {a['p50'] / f['p50']:.2f}x "
            f"| {g['p50'] / f['p50']:.2f}x | {g['p95'] / f['p95']:.2f}x |"
        )
    lines.append(f"| Kubernetes Job | not measured: {data['kubernetes']} |||||||||")
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
        if "unavailable" in row:
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
    lines += (
        []
        if not data["site"]
        else [
            "",
            "## site.yml: first converge vs idempotent rerun",
            "",
            "`ansible-playbook playbooks/site.yml` against a fresh systemd target container (`localhost/nanoclaw-target:debian12`,",
            "Podman connection), with the variables of `inventories/demo` and `nanoclaw_runtime` set per column. Floor: a play",
            "that only connects and gathers facts on the same target.",
            "",
            "| runtime | floor | first converge | changed | rerun | changed | first / floor | rerun / floor |",
            "|---|---|---|---|---|---|---|---|",
        ]
    )
    for runtime, row in data["site"].items():
        if "floor" not in row:
            lines.append(f"| {runtime} | failed: {row.get('error', '')} | | | | | | |")
            continue
        first, rerun = row.get("first", {}), row.get("rerun", {})

        def cell(run_: dict, floor: float = row["floor"]) -> tuple[str, str, str]:
            if not run_:
                return ("not run", "", "")
            ok = run_["rc"] == 0
            return (
                fmt_s(run_["wall"]) + ("" if ok else f" (FAILED, rc {run_['rc']})"),
                str(run_["changed"]),
                f"{run_['wall'] / floor:.2f}x",
            )

        f1, f2, f3 = cell(first)
        r1, r2, r3 = cell(rerun)
        lines.append(f"| {runtime} | {fmt_s(row['floor'])} | {f1} | {f2} | {r1} | {r2} | {f3} | {r3} |")
    if any(row.get("error") for row in data["site"].values()):
        lines += ["", *[f"- {rt}: {row['error']}" for rt, row in data["site"].items() if row.get("error")]]
    lines += [
        "",
        "## Reproduce",
        "",
        "```console",
        "./run bench            # or: python3 benchmarks/run.py [--runs N]",
        "./run bench:smoke      # the short form (3 samples) for CI; writes tests/output/PERFORMANCE-smoke.md",
        "```",
        "",
        "Raw samples of the last run: `tests/output/bench.json` (not committed).",
        "",
    ]
    return "\n".join(lines)


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
    try:
        wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
        engines = [e for e in prepare_engines() if e.key in wanted]
        data["machine"] = machine_info()
        with tempfile.TemporaryDirectory(prefix="nanoclaw-bench-", dir=WORK) as tmp:
            workdir = Path(tmp)
            data["cold"], data["concurrent"] = {}, {}
            for engine in engines:
                # Rootless networking (slirp4netns) needs /dev/net/tun as a normal host has it; only for that engine's runs.
                usable_tun = device_mode("/dev/net/tun", 0o666) if engine.key == "podman-rootless" else contextlib.nullcontext()
                with usable_tun:
                    problem = engine_problem(engine)
                    if problem:
                        log(f"not measuring {engine.key}: {problem}")
                        data["cold"][engine.key] = data["concurrent"][engine.key] = {"title": engine.title, "unavailable": problem}
                        continue
                    data["cold"][engine.key], data["concurrent"][engine.key] = bench_engine(engine, runs, rounds, workdir)
            data["kubernetes"] = kubernetes_job_status()
            data["site"] = {}
            if not args.skip_site:
                log("agent_image role: first run and no-change rerun")
                data["agent_image"] = bench_agent_image(workdir)
            for runtime in [] if args.skip_site else SITE_RUNTIMES:
                log(f"site.yml first converge and rerun, nanoclaw_runtime={runtime}")
                data["site"][runtime] = bench_site(runtime, workdir)
    finally:
        services.stop_started()
    data["loadavg_end"] = os.getloadavg()
    data["seconds"] = time.monotonic() - started
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / ("bench-smoke.json" if args.smoke else "bench.json")).write_text(json.dumps(data, indent=2, default=str) + "\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(data))
    log(f"wrote {output} ({data['seconds']:.0f} s)")
    failed = [rt for rt, row in data["site"].items() if row.get("error")]
    if failed:
        log("site.yml failed for: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
