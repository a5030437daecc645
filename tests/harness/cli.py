"""`./run`: the one entry point of the project's setup, demo and tests.

./run site     provision the embedded demo target end to end (playbooks/site.yml)
./run test     the whole test suite: setup, images, lint, sanity, unit, build, integration:modules,
               site:first-run, ee (site.yml again, from inside the EE: changed=0), k8s:a, k8s:b, molecule
./run bench    measure agent start-up and provisioning, write docs/PERFORMANCE.md (benchmarks/run.py)
./run down     remove the demo target and stop what the harness started
./run STAGE..  only some stages: setup host images lint sanity unit build integration:modules k8s:a k8s:b
               registries site:first-run ee bench:smoke molecule[:NAME]
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "tests.harness"

from tests.harness import ee, fixture_repo, fixtures, images, k8s, k8s_node, registry, services
from tests.harness.common import CACHE, CHECKOUT_ID, REPO, HarnessError, Report, StageResult, log, run, sha256_of
from tests.harness.results import junit_counts
from tests.harness.setup_env import ensure_collection_link, ensure_venv, tool_env, venv_bin

OUTPUT = REPO / "tests" / "output"
DEMO_CONTAINER = "nanoclaw-demo"
# Targets this run created (``./run test`` removes them at its end; ``./run site`` keeps its demo).
_CREATED: list[str] = []


def venv_run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    env = tool_env()
    env.update(kwargs.pop("env", {}) or {})
    return run(argv, env=env, cwd=kwargs.pop("cwd", REPO), **kwargs)


# ---------------------------------------------------------------- stages
def stage_setup(report: Report) -> None:
    with report.stage("setup") as st:
        if os.geteuid() != 0:
            raise HarnessError("./run prepares engines and images on this machine: run it as root (or with sudo)")
        for binary in ("git", "tar"):
            if shutil.which(binary) is None:
                raise HarnessError(f"missing host prerequisite '{binary}': install it with `apt-get install -y {binary}`")
        ensure_venv()
        ensure_collection_link()
        st.passed += 1


def stage_host(report: Report) -> None:
    with report.stage("host") as st:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
        nproc = 1048576 if nproc == resource.RLIM_INFINITY else nproc
        venv_run(
            [
                str(venv_bin() / "ansible-playbook"),
                "-i",
                "localhost,",
                "-c",
                "local",
                "-e",
                f"harness_nofile_hard={nofile} harness_nproc_hard={nproc}",
                "-e",
                f"ansible_python_interpreter={sys.executable}",
                str(REPO / "tests" / "harness" / "host.yml"),
            ]
        )
        st.passed += 1


def stage_images(report: Report) -> None:
    with report.stage("images") as st:
        built = images.build_all()
        log("imported: " + (", ".join(built) if built else "nothing, all current"))
        st.passed += len(images.TARGETS)


def stage_lint(report: Report) -> None:
    checks = [
        ("yamllint", [str(venv_bin() / "yamllint"), "--strict", "."]),
        ("ruff check", [str(venv_bin() / "ruff"), "check", "."]),
        ("ruff format", [str(venv_bin() / "ruff"), "format", "--check", "."]),
        ("ansible-lint", [str(venv_bin() / "ansible-lint"), "--profile", "production", "--offline"]),
    ]
    for name, argv in checks:
        with report.stage(f"lint:{name}") as st:
            venv_run(argv)
            st.passed += 1


def sanity_tree() -> Path:
    """Copy the tracked (and untracked, not ignored) files into the layout ansible-test needs."""
    root = CACHE / "sanity" / CHECKOUT_ID / "ansible_collections" / "nanoclaw" / "provision"
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture=True, cwd=REPO, quiet=True).stdout
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    listing = "\n".join(f for f in files.split("\0") if f and (REPO / f).exists())
    run(["rsync", "-a", "--files-from=-", f"{REPO}/", f"{root}/"], input_text=listing, quiet=True)
    # ansible-test only considers files git knows about when it finds a .git.
    run(["git", "init", "-q"], cwd=root, quiet=True)
    run(["git", "add", "-A"], cwd=root, quiet=True)
    return root


def provide_pip_bootstrap() -> None:
    """ansible-test downloads a get-pip script for each sanity venv; give it one that works offline."""
    site = next((venv_bin().parent / "lib").glob("python3*/site-packages/ansible_test"))
    source = (site / "_internal" / "python_requirements.py").read_text()
    versions = set(re.findall(r"pip='([0-9.]+)'", source))
    if not versions:
        raise HarnessError("cannot find the pip version ansible-test bootstraps")
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    script = (REPO / "tests" / "harness" / "files" / "get_pip_offline.py").read_text()
    for version in versions:
        target = cache / f"get_pip_{version.replace('.', '_')}.py"
        if not target.exists() or target.read_text() != script:
            target.write_text(script)


def stage_sanity(report: Report) -> None:
    with report.stage("sanity") as st:
        provide_pip_bootstrap()
        root = sanity_tree()
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        junit = root / "tests" / "output" / "junit"
        try:
            venv_run(
                [str(venv_bin() / "ansible-test"), "sanity", "--python", python, "--requirements", "--junit", "--color", "no"],
                cwd=root,
            )
        finally:
            not_applicable = 0
            for xml in junit.glob("*.xml"):
                p, f, s = junit_counts(xml)
                st.passed, st.failed, not_applicable = st.passed + p, st.failed + f, not_applicable + s
            # ansible-test marks a test "skipped" when no file of the collection is of its kind.
            log(f"{not_applicable} sanity tests had no files of their kind to check")


def _pytest(report: Report, name: str, argv: list[str], cwd: Path = REPO, env: dict | None = None) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    xml = OUTPUT / f"junit-{name.replace(':', '-')}.xml"
    xml.unlink(missing_ok=True)
    with report.stage(name) as st:
        try:
            venv_run([*argv, f"--junitxml={xml}"], cwd=cwd, env=env)
        finally:
            if xml.exists():
                st.passed, st.failed, st.skipped = junit_counts(xml)


def stage_unit(report: Report) -> None:
    _pytest(
        report,
        "unit",
        [str(venv_bin() / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
        env={"PYTHONPATH": str(REPO / ".cache" / "collections")},
    )


def stage_build(report: Report) -> None:
    """The collection builds into a tarball that installs offline and documents its roles."""
    with report.stage("build") as st:
        dist = CACHE / "dist"
        shutil.rmtree(dist, ignore_errors=True)
        dist.mkdir(parents=True)
        venv_run([str(venv_bin() / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(REPO)])
        tarball = next(dist.glob("nanoclaw-provision-*.tar.gz"))
        target = dist / "installed"
        venv_run(
            [
                str(venv_bin() / "ansible-galaxy"),
                "collection",
                "install",
                "--offline",
                "--no-deps",
                "--force",
                "-p",
                str(target),
                str(tarball),
            ]
        )
        doc = venv_run(
            [str(venv_bin() / "ansible-doc"), "-t", "role", "nanoclaw.provision.preflight"],
            env={"ANSIBLE_COLLECTIONS_PATH": str(target)},
            capture=True,
        )
        if "nanoclaw_preflight_concurrent_agents" not in doc.stdout:
            raise HarnessError("ansible-doc of the installed tarball does not show the preflight arguments")
        for module, option in (("runtime_compat", "generation"), ("agent_smoke", "secrets")):
            doc = venv_run(
                [str(venv_bin() / "ansible-doc"), f"nanoclaw.provision.{module}"],
                env={"ANSIBLE_COLLECTIONS_PATH": str(target)},
                capture=True,
            )
            if option not in doc.stdout:
                raise HarnessError(f"ansible-doc of the installed tarball does not document {module}")
        st.passed += 1


def stage_integration_modules(report: Report) -> None:
    """runtime_compat and agent_smoke for real: rootful Docker and rootless Podman (tests/integration/modules)."""
    with report.stage("integration:fixtures") as st:
        env = fixtures.prepare()
        st.passed += 1
    if st.error:
        return
    _pytest(
        report,
        "integration:modules",
        [str(venv_bin() / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/integration/modules"],
        env={"PYTHONPATH": str(REPO / ".cache" / "collections"), **env},
    )


def stage_ee(report: Report) -> None:
    """The execution environment as AWX runs it: built by ansible-builder, then site.yml from inside it
    by ansible-runner against the demo target (tests/harness/ee.py). After ``site:first-run`` of the
    same run the target is converged already, and the EE's run must change nothing."""
    converged = any(s.name == "site:first-run" and not s.error and not s.failed for s in report.stages)
    with report.stage("ee") as st:
        if not converged and ensure_demo():
            _CREATED.append(DEMO_CONTAINER)
        held = ee.stage(DEMO_CONTAINER, expect_unchanged=converged)[0]
        st.passed += len(held)


def stage_bench(report: Report, smoke: bool) -> None:
    """benchmarks/run.py: the full run writes docs/PERFORMANCE.md; the smoke form (few samples) only tests/output/."""
    name = "bench:smoke" if smoke else "bench"
    with report.stage(name) as st:
        run([sys.executable, "-u", str(REPO / "benchmarks" / "run.py"), *(["--smoke"] if smoke else [])], cwd=REPO)
        st.passed += 1


def stage_registries(report: Report) -> None:
    """The loopback registries (TLS, auth, seeded mirror) the agent_image scenarios push to and build from."""
    with report.stage("registries") as st:
        log(f"registries ready, described in {registry.ensure_registries()}")
        st.passed += 1


def ensure_registries_for(report: Report, scenarios: list[str]) -> None:
    """Start the registries once, before any agent_image scenario (they may run in parallel)."""
    if any(s.startswith("agent_image_") for s in scenarios) and "NANOCLAW_REGISTRY_INFO" not in os.environ:
        stage_registries(report)


def molecule_scenarios(include_manual: bool = False) -> list[str]:
    """Scenario names; a scenario with a MANUAL file (its text says why) runs only when named."""
    found = sorted(p.parent for p in (REPO / "molecule").glob("*/molecule.yml"))
    return [d.name for d in found if include_manual or not (d / "MANUAL").exists()]


def report_manual_scenarios() -> None:
    for marker in sorted((REPO / "molecule").glob("*/MANUAL")):
        reason = " ".join(marker.read_text().split())
        log(f"not in the test plan: molecule:{marker.parent.name} ({reason}); run it with ./run molecule:{marker.parent.name}")


def stage_molecule(report: Report, scenario: str, log_file: Path | None = None, stop_fixtures: bool = True) -> None:
    """``molecule test -s scenario``; with ``log_file`` its output goes there (parallel runs).

    ``stop_fixtures=False`` leaves the FIXTURE repositories' daemons running for other
    scenarios of the same pool (whoever runs the pool stops them at its end)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    xml = OUTPUT / f"junit-molecule-{scenario}.xml"
    xml.unlink(missing_ok=True)
    molecule = str(venv_bin() / "molecule")
    env = tool_env()
    env["PYTEST_ADDOPTS"] = f"--junitxml={xml} -p no:cacheprovider"
    full_env = {**os.environ, **env}

    def molecule_run(action: str) -> int:
        argv = [molecule, action, "-s", scenario]
        if log_file is None:
            return run(argv, env=env, cwd=REPO, check=False).returncode
        with log_file.open("a") as out:
            return subprocess.run(argv, env=full_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False).returncode

    with report.stage(f"molecule:{scenario}") as st:
        try:
            rc = molecule_run("test")
            if rc != 0:
                if log_file is not None:
                    tail = log_file.read_text(errors="replace").splitlines()[-150:]
                    print(f"--- last lines of {log_file} ---\n" + "\n".join(tail), flush=True)
                raise HarnessError(f"molecule test -s {scenario} failed ({rc})")
            st.passed += 1  # check, check-unchanged, converge and idempotence all held
        finally:
            if xml.exists():
                p, f, s = junit_counts(xml)
                st.passed += p
                st.failed += f
                st.skipped += s
            # A failed scenario still destroys its containers.
            molecule_run("destroy")
            if scenario.startswith("nanoclaw") and stop_fixtures:
                # prepare.yml of the nanoclaw scenarios serves the fixture repositories: stop them.
                fixture_repo.stop()


# Long ones first (whole runs on the 2-core test machine under load: nanoclaw_podman ~32 min,
# nanoclaw_docker ~26, agent_image_docker ~20, agent_image_podman ~15, the rest under 10), so that the
# pool does not end on a long one; the two agent_image scenarios never overlap (see _EXCLUSIVE), and
# the two nanoclaw ones start apart (their prepare serves the FIXTURE repositories, once).
MOLECULE_ORDER = ["nanoclaw_podman", "agent_image_docker", "podman", "nanoclaw_docker", "agent_image_podman", "docker"]
# Scenarios that must not run at the same time: the agent_image ones share the push registry, and
# their verify stops and restarts it (a registry that is down while the other pushes would fail it).
_EXCLUSIVE = {"agent_image_": threading.Lock()}


def _exclusive(scenario: str):
    return next((lock for prefix, lock in _EXCLUSIVE.items() if scenario.startswith(prefix)), contextlib.nullcontext())


def stage_molecule_all(report: Report, scenarios: list[str]) -> None:
    """Run the scenarios, NANOCLAW_JOBS (default 3) at a time, longest first; each logs to tests/output/."""
    jobs = max(1, int(os.environ.get("NANOCLAW_JOBS", "3")))
    scenarios = sorted(scenarios, key=lambda s: (MOLECULE_ORDER.index(s) if s in MOLECULE_ORDER else len(MOLECULE_ORDER), s))
    try:
        if jobs == 1 or len(scenarios) == 1:
            for scenario in scenarios:
                stage_molecule(report, scenario, stop_fixtures=False)
            return
        OUTPUT.mkdir(parents=True, exist_ok=True)

        def one(scenario: str) -> None:
            log_file = OUTPUT / f"molecule-{scenario}.log"
            log_file.write_text("")
            with _exclusive(scenario):
                log(f"molecule:{scenario} started; output in {log_file}")
                stage_molecule(report, scenario, log_file, stop_fixtures=False)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, scenarios))
    finally:
        # The nanoclaw scenarios' prepare serves the FIXTURE repositories; stopped once all are done.
        fixture_repo.stop()


def stage_k8s(report: Report, which: str) -> None:
    """A real cluster built from the k8s.io/kubernetes module, and the kubernetes role's tests on it.

    k8s:a - the control plane only (tests/k8s/test_stage_a.py);
    k8s:b - plus a node (containerd, CNI bridge, kubelet) where agent Jobs really run
    (tests/k8s/test_stage_b.py: agent_smoke's Job mode, concurrency, IPC, Job latency).
    """
    if which not in ("a", "b"):
        raise SystemExit(f"unknown kubernetes stage k8s:{which} (k8s:a or k8s:b)")
    cluster = None
    node_started = False
    try:
        with report.stage("k8s:cluster" if which == "a" else "k8s:cluster+node") as st:
            cluster = k8s.start()
            if which == "b":
                node_started = True
                k8s_node.start(cluster)
            st.passed += 1
        if report.stages[-1].error or cluster is None:
            return
        latency = OUTPUT / "k8s-job-latency.txt"
        latency.unlink(missing_ok=True)
        _pytest(
            report,
            f"k8s:{which}",
            [str(venv_bin() / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/k8s/test_stage_{which}.py"],
            env={
                "NANOCLAW_K8S_KUBECONFIG": str(cluster.admin_kubeconfig),
                "NANOCLAW_K8S_KUBECTL": str(cluster.bin / "kubectl"),
                "NANOCLAW_K8S_VERSION": k8s.K8S_VERSION,
            },
        )
        if latency.exists():
            print(latency.read_text(), end="", flush=True)
    finally:
        if node_started:
            k8s_node.stop(cluster)
        k8s.stop()


# ---------------------------------------------------------------- demo
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
DEMO_FIXTURE_DIR = "/srv/nanoclaw-fixture"
DEMO_IMAGE = next(t for t in images.TARGETS if t.name.endswith(":debian13"))


def parse_recap(lines: list[str]) -> dict[str, dict[str, int]]:
    """Per host ok/changed/unreachable/failed from ansible-playbook's PLAY RECAP."""
    recap: dict[str, dict[str, int]] = {}
    for line in lines:
        m = RECAP.match(line.strip())
        if m:
            host, *counts = m.groups()
            recap[host] = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, counts), strict=True))
    return recap


def playbook_run(argv: list[str], log_file: Path) -> tuple[int, dict[str, dict[str, int]], float]:
    """Run ansible-playbook, streaming its output and keeping a copy; returns (rc, recap, seconds)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    log("$ " + " ".join(argv))
    started = time.monotonic()
    lines: list[str] = []
    with (
        log_file.open("w") as out,
        subprocess.Popen(
            argv, cwd=REPO, env={**os.environ, **tool_env()}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            out.write(line)
            lines.append(line)
        rc = proc.wait()
    return rc, parse_recap(lines[-50:]), time.monotonic() - started


def prepare_demo_target(meta: dict, container: str = DEMO_CONTAINER) -> None:
    """Give a demo target (the demo's, or the benchmark's) what a real host gets from elsewhere:
    the FIXTURE repository and Node tarball (its "internal mirror"), and /dev/net/tun and
    /dev/fuse as open as on a normal Debian host (0666; this machine's are 0600 and privileged
    containers inherit that)."""

    def inside(*argv: str) -> subprocess.CompletedProcess[str]:
        return run(["podman", "exec", container, *argv], capture=True, quiet=True)

    inside("chmod", "0666", "/dev/net/tun", "/dev/fuse")
    inside("mkdir", "-p", DEMO_FIXTURE_DIR)
    archive = Path(meta["v1"]["archive"])
    node = Path(meta["root"]) / "mirror" / meta["node"]["file"]
    stamp = f"{sha256_of(archive)} {meta['node']['sha256']}"
    seen = run(["podman", "exec", container, "cat", f"{DEMO_FIXTURE_DIR}/.stamp"], check=False, capture=True, quiet=True)
    if seen.stdout.strip() == stamp:
        return
    for source in (archive, node):
        run(["podman", "cp", str(source), f"{container}:{DEMO_FIXTURE_DIR}/{source.name}"], quiet=True)
    bare = f"{DEMO_FIXTURE_DIR}/nanoclaw-v1.git"
    inside("sh", "-c", f"rm -rf {bare} && tar -C {DEMO_FIXTURE_DIR} -xzf {DEMO_FIXTURE_DIR}/{archive.name} && chmod -R a+rX {bare}")
    # The service user clones it over file://: git refuses a repository another user owns.
    inside("sh", "-c", f"git config --system --get-all safe.directory | grep -qx {bare} || git config --system --add safe.directory {bare}")
    inside("sh", "-c", f"echo '{stamp}' > {DEMO_FIXTURE_DIR}/.stamp")


def ensure_demo() -> bool:
    """The demo target running and given its FIXTURES (idempotent); True when this call started it."""
    registry.ensure_registries()
    meta = fixture_repo.build()
    # Debian 13: its Podman 5 understands NanoClaw's --add-host=...:host-gateway, which
    # Debian 12's Podman 4.3 rejects (runtime_compat's add_host_gateway check).
    started = services.ensure_demo_target(DEMO_CONTAINER, DEMO_IMAGE.name)
    prepare_demo_target(meta)
    return started


def stage_site(report: Report, runs: tuple[str, ...] = ("first run", "second run")) -> None:
    """site.yml end to end against the demo target, then again: the second run must change nothing.

    In ``./run test`` only the first run is made here; the EE stage then runs site.yml once
    more on the same target, from inside the execution environment, and asserts changed=0.
    """
    with report.stage("site:fixtures") as st:
        if ensure_demo():
            _CREATED.append(DEMO_CONTAINER)
        st.passed += 1
    if st.error:
        return
    argv = [
        str(venv_bin() / "ansible-playbook"),
        "-i",
        str(REPO / "inventories" / "demo" / "hosts.yml"),
        str(REPO / "playbooks" / "site.yml"),
    ]
    timings = []
    for run_name in runs:
        with report.stage(f"site:{run_name.replace(' ', '-')}") as st:
            rc, recap, seconds = playbook_run(argv, OUTPUT / f"site-{run_name.replace(' ', '-')}.log")
            timings.append((run_name, seconds, recap))
            if rc != 0 or not recap or any(h["failed"] or h["unreachable"] for h in recap.values()):
                raise HarnessError(f"site.yml {run_name} failed (exit {rc}): {recap}")
            changed = {host: h["changed"] for host, h in recap.items()}
            if run_name == "second run" and any(changed.values()):
                raise HarnessError(f"site.yml is not idempotent: its second run changed {changed}")
            st.passed += 1
        if st.error:
            break
    for run_name, seconds, recap in timings:
        changed = ", ".join(f"{host} changed={h['changed']}" for host, h in recap.items())
        log(f"site.yml {run_name}: {seconds:.1f} s, {changed}")


# ---------------------------------------------------------------- main
STAGES = {
    "setup": stage_setup,
    "host": stage_host,
    "images": stage_images,
    "lint": stage_lint,
    "sanity": stage_sanity,
    "unit": stage_unit,
    "build": stage_build,
    "integration:modules": stage_integration_modules,
    "registries": stage_registries,
    "ee": stage_ee,
    "bench": lambda report: stage_bench(report, smoke=False),
    "bench:smoke": lambda report: stage_bench(report, smoke=True),
}


def plan(args: list[str]) -> list[str]:
    if not args or args == ["test"]:
        return [
            "setup",
            "host",
            "images",
            "lint",
            "sanity",
            "unit",
            "build",
            "integration:modules",
            "site:first-run",
            "ee",
            "k8s:a",
            "k8s:b",
            "molecule",
        ]
    if args == ["site"]:
        return ["setup", "host", "images", "site"]
    if args == ["bench"]:
        return ["setup", "host", "images", "bench"]
    return args


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    if argv == ["down"]:
        services.remove_container(DEMO_CONTAINER)
        services.stop_all()
        return 0
    report = Report()
    started = time.monotonic()
    steps = plan(argv)
    try:
        for step in steps:
            foundation_failed = any(s.error for s in report.stages if s.name in ("setup", "host", "images"))
            if foundation_failed:
                log(f"skipping {step}: setup, host or images failed")
                report.stages.append(StageResult(name=step, seconds=0.0, failed=1, error="not run: setup failed"))
                continue
            if step == "molecule":
                report_manual_scenarios()
                services.sweep_stale(molecule_scenarios(include_manual=True))
                ensure_registries_for(report, molecule_scenarios())
                stage_molecule_all(report, molecule_scenarios())
            elif step.startswith("molecule:"):
                ensure_registries_for(report, [step.split(":", 1)[1]])
                stage_molecule(report, step.split(":", 1)[1])
            elif step.startswith("k8s:"):
                stage_k8s(report, step.split(":", 1)[1])
            elif step == "site":
                stage_site(report)
            elif step == "site:first-run":
                stage_site(report, runs=("first run",))
            elif step in STAGES:
                STAGES[step](report)
            else:
                print(__doc__)
                raise SystemExit(f"unknown stage {step!r}")
    finally:
        if argv != ["site"]:
            services.stop_started()
            while _CREATED:
                services.remove_container(_CREATED.pop())
    print(report.summary())
    print(f"wall time {time.monotonic() - started:.1f} s")
    failed = report.failed
    print(f"{report.passed} passed, {failed} failed" + (f", {report.skipped} skipped" if report.skipped else ""))
    return 1 if failed or any(s.error for s in report.stages) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
