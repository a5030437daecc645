"""`./run`: the one entry point of the project's setup, demo and tests.

./run site       provision the demo targets end to end (playbooks/site.yml, twice)
./run test       the whole test suite: every stage below but the benchmark, several at a time
./run bench      measure agent start-up and provisioning, write docs/PERFORMANCE.md (benchmarks/run.py)
./run down       remove the demo targets and stop what the harness started
./run STAGE..    only these stages (and `molecule` for every scenario); what they need from each
                 other still comes first, what they need from stages not named is not run
./run --plan ARGS   the stages of `./run ARGS`, what each waits for and holds, and the order they
                    would run in (from each stage's measured cold time), without running anything
./run --graph ARGS  the same graph as a Mermaid flowchart (docs/TESTING.md shows it)

Stages run in processes of their own, NANOCLAW_JOBS (default 4) at a time, each logging to
tests/output/stage-NAME.log; the stage registry (stage_registry below) says what each needs.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import (
    compat,
    demo,
    ee,
    fixture_repo,
    fixtures,
    galaxy,
    images,
    k8s,
    k8s_build,
    k8s_node,
    k8s_policy,
    lanes,
    registry,
    services,
)
from tests.harness.common import CACHE, CHECKOUT_ID, COLD, PROFILE_ENV, REPO, WARM, HarnessError, Report, log, parse_recap, run
from tests.harness.results import junit_counts
from tests.harness.schedule import EXCLUSIVE, SHARED, Stage, mermaid, simulate
from tests.harness.setup_env import ensure_collection_link, ensure_venv, tool_env, venv_bin, venv_current, venv_dir

OUTPUT = REPO / "tests" / "output"
DEMO_CONTAINER = demo.PODMAN_TARGET


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
        st.cache = WARM if venv_current() else COLD
        ensure_venv()
        ensure_collection_link()
        st.passed += 1


# What host.yml installs, by a command of each package: any missing means this run installs them.
HOST_COMMANDS = ("podman", "runc", "newuidmap", "slirp4netns", "fuse-overlayfs", "debootstrap", "dockerd", "docker-registry", "etcd")


def stage_host(report: Report) -> None:
    with report.stage("host") as st:
        st.cache = WARM if all(shutil.which(c) for c in HOST_COMMANDS) else COLD
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
        st.cache = COLD if built else WARM
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


def sanity_tree(name: str = "") -> Path:
    """Copy the tracked (and untracked, not ignored) files into the layout ansible-test needs
    (one copy per ``name``: stages that may run at the same time never share one)."""
    base = CACHE / "sanity" / (f"{CHECKOUT_ID}-{name}" if name else CHECKOUT_ID)
    root = base / "ansible_collections" / "nanoclaw" / "provision"
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


CONTROLLER_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _ansible_test_cache() -> str:
    # ansible-test keeps a virtualenv per sanity test (with --requirements) under ~/.ansible/test/venv.
    return WARM if any((Path.home() / ".ansible" / "test" / "venv").glob("sanity*")) else COLD


def _ansible_test_sanity(st, venv: Path, root: Path, python: str, *, tests: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
    """``ansible-test sanity`` of ``venv`` (its ansible-core) in ``root`` with ``python``, only ``tests``
    (all when empty) but ``skip``; counts its junit results."""
    junit = root / "tests" / "output" / "junit"
    shutil.rmtree(junit, ignore_errors=True)
    argv = [str(venv / "bin" / "ansible-test"), "sanity", "--python", python, "--requirements", "--junit", "--color", "no"]
    for test in tests:
        argv += ["--test", test]
    for test in skip:
        argv += ["--skip-test", test]
    # pythonX.Y of the target floor first on PATH (a pyenv shim of an unselected version fails).
    path = f"{compat.pythons_dir([python])}:{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    try:
        venv_run(argv, cwd=root, env={"PATH": path, "VIRTUAL_ENV": str(venv)})
    finally:
        not_applicable = 0
        for xml in junit.glob("*.xml"):
            p, f, s = junit_counts(xml)
            st.passed, st.failed, not_applicable = st.passed + p, st.failed + f, not_applicable + s
        # ansible-test marks a test "skipped" when no file of the collection is of its kind.
        log(f"{not_applicable} sanity tests had no files of their kind to check")


def _floor_python(st) -> str | None:
    """The target Python floor (tests/config.yml) if this machine has it; otherwise a named skip."""
    floor = compat.target_python_floor()
    if compat.find_python(floor) is None:
        log(
            f"SKIPPED: no python{floor} on this machine (PATH, /usr/bin, /usr/local/bin, ~/.pyenv/versions): "
            f"the modules were not compiled and imported with the Python {floor} tests/config.yml claims"
        )
        st.skipped += 1
        return None
    return floor


def stage_sanity(report: Report) -> None:
    """ansible-test sanity with the project venv's ansible-core, the newest the collection claims."""
    with report.stage("sanity") as st:
        st.cache = _ansible_test_cache()
        compat.provide_pip_bootstrap(venv_dir())
        _ansible_test_sanity(st, venv_dir(), sanity_tree(), CONTROLLER_PYTHON)


def stage_sanity_floor(report: Report) -> None:
    """The modules and module_utils compiled and imported with the oldest Python they claim on targets."""
    with report.stage(f"sanity:python{compat.target_python_floor()}") as st:
        st.cache = _ansible_test_cache()
        floor = _floor_python(st)
        if floor:
            compat.provide_pip_bootstrap(venv_dir())
            _ansible_test_sanity(st, venv_dir(), sanity_tree("floor"), floor, tests=("compile", "import"))


def stage_oldest_core(report: Report) -> None:
    """Sanity and the collection's unit tests with the oldest ansible-core meta/runtime.yml admits."""
    version = compat.oldest_core()
    with report.stage(f"sanity:ansible-core-{version}") as st:
        st.cache = WARM if (compat.core_venv(version) / ".nanoclaw-complete").exists() else COLD
        venv = compat.ensure_core_venv(version)
        compat.provide_pip_bootstrap(venv)
        root = sanity_tree(f"core-{version}")
        # Every test but pylint, whose findings depend on the pylint release ansible-test pins, not
        # on what this ansible-core runs, and which costs three quarters of the time (the sanity
        # stage runs it with the newest ansible-core).
        _ansible_test_sanity(st, venv, root, CONTROLLER_PYTHON, skip=("pylint",))
        floor = _floor_python(st)
        if floor:
            _ansible_test_sanity(st, venv, root, floor, tests=("compile", "import"))
    venv = compat.core_venv(version)
    if not (venv / ".nanoclaw-complete").exists():
        return  # the venv could not be made: the sanity stage says why
    _pytest(
        report,
        f"unit:ansible-core-{version}",
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/plugins"],
        env={"PYTHONPATH": str(REPO / ".cache" / "collections"), "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"},
    )


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
    """The collection builds into a tarball that installs offline and documents its roles, and
    that galaxy-importer (what Ansible Galaxy runs on an upload) imports."""
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
        for module, option in (("runtime_compat", "generation"), ("agent_smoke", "secrets"), ("agent_smoke_job", "warm")):
            doc = venv_run(
                [str(venv_bin() / "ansible-doc"), f"nanoclaw.provision.{module}"],
                env={"ANSIBLE_COLLECTIONS_PATH": str(target)},
                capture=True,
            )
            if option not in doc.stdout:
                raise HarnessError(f"ansible-doc of the installed tarball does not document {module}")
        st.passed += 1
    if st.error:
        return
    with report.stage("build:galaxy-importer") as st:
        st.cache = WARM if (galaxy.venv_dir() / ".nanoclaw-complete").exists() else COLD
        galaxy.import_tarball(tarball)
        st.passed += 1


def stage_integration_fixtures(report: Report) -> None:
    """The engines and TEST FIXTURE agent images of the module tests (and of k8s:b's node)."""
    with report.stage("integration:fixtures") as st:
        st.cache = WARM if fixtures.current() else COLD
        fixtures.prepare()
        st.passed += 1


def stage_integration_modules(report: Report) -> None:
    """runtime_compat and agent_smoke for real: rootful Docker and rootless Podman (tests/integration/modules)."""
    env = fixtures.prepare()  # nothing to do after integration:fixtures; run alone, it prepares them
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
        if not converged:
            ensure_demo()
        held = ee.stage(DEMO_CONTAINER, expect_unchanged=converged)[0]
        st.passed += len(held)


def stage_bench(report: Report, smoke: bool) -> None:
    """benchmarks/run.py: the full run writes docs/PERFORMANCE.md; the smoke form (few samples) only tests/output/."""
    name = "bench:smoke" if smoke else "bench"
    with report.stage(name) as st:
        run([sys.executable, "-u", "-m", "benchmarks.run", *(["--smoke"] if smoke else [])], cwd=REPO)
        st.passed += 1


def stage_registries(report: Report) -> None:
    """The loopback registries (TLS, auth, seeded mirror) the demo targets and agent_image scenarios use."""
    with report.stage("registries") as st:
        st.cache = WARM if registry.standin_current() else COLD
        log(f"registries ready, described in {registry.ensure_registries()}")
        st.passed += 1


def stage_fixture_repos(report: Report) -> None:
    """The FIXTURE repositories and Node tarball (tests/harness/fixture_repo.py), served by git daemon
    and HTTP for the nanoclaw scenarios; the demo targets get them copied in. Made once, before the
    stages that use them start at the same time."""
    with report.stage("fixture-repos") as st:
        st.cache = WARM if fixture_repo.current() else COLD
        fixture_repo.serve()
        st.passed += 1


def stage_k8s_build(report: Report) -> None:
    """kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kubelet from the
    k8s.io/kubernetes Go module (tests/harness/k8s_build.py); it needs only Go and the module proxy,
    so it starts with the run. Also kube-router (its NetworkPolicy controller enforces k8s:b's policies)."""
    with report.stage("k8s:build") as st:
        st.cache = COLD if k8s_build.missing() or not k8s_build.kube_router_bin().exists() else WARM
        k8s_build.build()
        k8s_build.build_kube_router()
        st.passed += 1


def stage_ee_image(report: Report) -> None:
    """The EE base image and the EE (ansible-builder), built before the demo targets are converged so
    that the ``ee`` stage finds them current (tests/harness/ee.py)."""
    with report.stage("ee:image") as st:
        before = ee.image_ids()
        ee.ensure_ee(ee.ensure_base())
        st.cache = WARM if ee.image_ids() == before else COLD
        st.passed += 1


def molecule_scenarios(include_manual: bool = False) -> list[str]:
    """Scenario names; a scenario with a MANUAL file (its text says why) runs only when named."""
    found = sorted(p.parent for p in (REPO / "molecule").glob("*/molecule.yml"))
    return [d.name for d in found if include_manual or not (d / "MANUAL").exists()]


def report_manual_scenarios() -> None:
    for marker in sorted((REPO / "molecule").glob("*/MANUAL")):
        reason = " ".join(marker.read_text().split())
        log(f"not in the test plan: molecule:{marker.parent.name} ({reason}); run it with ./run molecule:{marker.parent.name}")


def stage_molecule(report: Report, scenario: str) -> None:
    """``molecule test -s scenario`` (then ``destroy``, also after a failure).

    The FIXTURE repositories' daemons that the nanoclaw scenarios' prepare serves, and the
    registries, stay up for the other stages; ``./run`` stops what its run started at its end."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    xml = OUTPUT / f"junit-molecule-{scenario}.xml"
    xml.unlink(missing_ok=True)
    molecule = str(venv_bin() / "molecule")
    env = tool_env()
    env["PYTEST_ADDOPTS"] = f"--junitxml={xml} -p no:cacheprovider"
    services.sweep_stale([scenario])
    services.remove_engine_volumes(scenario)
    if scenario.startswith("agent_image_"):
        # The registries (the push one of this stage's own port: NANOCLAW_REGISTRY_PORT) and the
        # info file the scenario reads (NANOCLAW_REGISTRY_INFO).
        log(f"registries ready, described in {registry.ensure_registries()}")
    with report.stage(f"molecule:{scenario}") as st:
        try:
            rc = run([molecule, "test", "-s", scenario], env=env, cwd=REPO, check=False).returncode
            if rc != 0:
                raise HarnessError(f"molecule test -s {scenario} failed ({rc})")
            st.passed += 1  # check, check-unchanged, converge and idempotence all held
        finally:
            if xml.exists():
                p, f, s = junit_counts(xml)
                st.passed += p
                st.failed += f
                st.skipped += s
            # A failed scenario still destroys its containers.
            run([molecule, "destroy", "-s", scenario], env=env, cwd=REPO, check=False)
            services.remove_engine_volumes(scenario)


K8S_TESTS = {
    "a": ["tests/k8s/test_stage_a.py"],
    "b": [
        "tests/k8s/test_stage_b.py",
        "tests/k8s/test_stage_b_v2.py",
        "tests/k8s/test_stage_b_warm.py",
        "tests/k8s/test_stage_b_nodes.py",
        "tests/k8s/test_stage_b_policy.py",
    ],
}


def stage_k8s(report: Report, which: str) -> None:
    """A real cluster built from the k8s.io/kubernetes module, and the kubernetes role's tests on it.

    k8s:a - the control plane only (tests/k8s/test_stage_a.py);
    k8s:b - plus two nodes (containerd, CNI bridge, kubelet each) where agent Jobs really run
    (tests/k8s/test_stage_b.py: agent_smoke_job, concurrency, IPC, Job latency, site.yml's
    cluster path; tests/k8s/test_stage_b_nodes.py: pods across nodes, shared claims, spreading).
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
        for name in ("k8s-two-nodes.txt", "k8s-policy.txt", "k8s-warm-latency.txt"):
            (OUTPUT / name).unlink(missing_ok=True)
        _pytest(
            report,
            f"k8s:{which}",
            [str(venv_bin() / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *K8S_TESTS[which]],
            env={
                "NANOCLAW_K8S_KUBECONFIG": str(cluster.admin_kubeconfig),
                "NANOCLAW_K8S_KUBECTL": str(cluster.bin / "kubectl"),
                "NANOCLAW_K8S_VERSION": k8s.K8S_VERSION,
            },
        )
        for measured in (latency, *(OUTPUT / name for name in ("k8s-warm-latency.txt", "k8s-two-nodes.txt", "k8s-policy.txt"))):
            if measured.exists():
                print(measured.read_text(), end="", flush=True)
    finally:
        if node_started:
            k8s_policy.stop()
            k8s_node.stop(cluster)
        k8s.stop()


# ---------------------------------------------------------------- demo


FAILURE = re.compile(r"^(fatal|failed): \[[^\]]+\]")


def _shorten(block: list[str], limit: int) -> str:
    """A failed result's first ``limit`` lines and, when it comes later, its ``msg:`` (the YAML
    callback sorts keys, so a module's long lists come before the message)."""
    kept = block[:limit]
    msg_at = next((i for i, text in enumerate(block) if text.strip().startswith("msg:")), None)
    if msg_at is not None and msg_at >= limit:
        indent = len(block[msg_at]) - len(block[msg_at].lstrip())
        end = msg_at + 1
        while end < len(block) and len(block[end]) - len(block[end].lstrip()) > indent:
            end += 1
        kept += ["    ...", *block[msg_at:end][:limit]]
    return "\n".join(kept)


def parse_failures(lines: list[str], limit: int = 30) -> list[str]:
    """Each failed task of an ansible-playbook output, shortened: its TASK line and result (the
    playbook's tail, which is what CI shows, ends with the recaps, far below the failure)."""
    blocks: list[list[str]] = []
    task = ""
    current: list[str] | None = None
    for line in lines:
        text = line.rstrip("\n")
        if current is not None and text.startswith((" ", "\t")):
            current.append(text)
            continue
        if current is not None and text.strip() == "...ignoring":
            blocks.remove(current)
        current = None
        if text.startswith("TASK ["):
            task = text.rstrip(" *")
        elif FAILURE.match(text):
            current = [task, text] if task else [text]
            blocks.append(current)
    return [_shorten(block, limit) for block in blocks]


def playbook_run(argv: list[str], log_file: Path) -> tuple[int, dict[str, dict[str, int]], float]:
    """Run ansible-playbook, streaming its output and keeping a copy; returns (rc, recap, seconds)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    log("$ " + " ".join(argv))
    started = time.monotonic()
    lines: list[str] = []
    with (
        log_file.open("w") as out,
        subprocess.Popen(
            argv, cwd=REPO, env={**PROFILE_ENV, **os.environ, **tool_env()}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            out.write(line)
            lines.append(line)
        rc = proc.wait()
    if rc != 0:
        for block in parse_failures(lines):
            log("a task failed:\n" + block)
    return rc, parse_recap(lines[-50:]), time.monotonic() - started


def ensure_demo() -> bool:
    """The demo targets running and given what they need (idempotent); True when this call started one."""
    return bool(demo.ensure())


DEMO_INVENTORY = REPO / "inventories" / "demo" / "hosts.yml"


def site_playbook(
    report: Report, stage: str, playbook: str = "site.yml", extra: tuple[str, ...] = (), unchanged: bool = False
) -> dict[str, dict[str, int]]:
    """One ansible-playbook run against the demo targets as a stage; it fails on a non-zero exit,
    a failed or unreachable host and, with ``unchanged``, a host that changed anything."""
    argv = [str(venv_bin() / "ansible-playbook"), "-i", str(DEMO_INVENTORY), str(REPO / "playbooks" / playbook), *extra]
    recap: dict[str, dict[str, int]] = {}
    with report.stage(stage) as st:
        rc, recap, seconds = playbook_run(argv, OUTPUT / f"{stage.replace(':', '-')}.log")
        changed = ", ".join(f"{host} changed={h['changed']}" for host, h in recap.items())
        log(f"{playbook} ({stage}): {seconds:.1f} s, {changed}")
        if rc != 0 or not recap or any(h["failed"] or h["unreachable"] for h in recap.values()):
            raise HarnessError(f"{playbook} ({stage}) failed (exit {rc}): {recap}")
        if unchanged and any(h["changed"] for h in recap.values()):
            raise HarnessError(f"{playbook} is not idempotent: {stage} changed {changed}")
        st.passed += 1
    return recap


def stage_site_fixtures(report: Report) -> bool:
    with report.stage("site:fixtures") as st:
        ensure_demo()
        st.passed += 1
    return not st.error


def stage_site(report: Report, runs: tuple[str, ...] = ("first run", "second run")) -> None:
    """site.yml end to end against the demo targets (real upstream NanoClaw), then again: the
    second run, made after NanoClaw itself has run, must change nothing."""
    if not stage_site_fixtures(report):
        return
    for run_name in runs:
        site_playbook(report, f"site:{run_name.replace(' ', '-')}", unchanged=run_name != "first run")
        if report.stages[-1].error:
            break


def stage_real(report: Report, which: str) -> None:
    """Assertions on the real NanoClaw the demo targets run (tests/real/):

    real:checks   after site:first-run - pins, detected generation, exact .env keys, unit names,
                  the service's state 30 s after start (v2 up; v1 with no channel reported), and
                  playbooks/image.yml and compat_smoke.yml alone, from the roles' records;
    real:drift    after site:second-run, the Podman target: a drifted config file, stopped unit,
                  wrong owner and missing image, all repaired by a rerun;
    real:upgrade  the Docker target from v1 to v2 with playbooks/upgrade.yml, data kept, then
                  site.yml again after v2 ran: changed=0."""
    env = {"NANOCLAW_UPSTREAM_JSON": str(demo.UPSTREAM_JSON), "NANOCLAW_DEMO_INVENTORY": str(DEMO_INVENTORY), "NANOCLAW_REAL_STAGE": which}
    _pytest(
        report,
        f"real:{which}",
        [str(venv_bin() / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", f"tests/real/test_{which}.py"],
        env={"PYTHONPATH": str(REPO / ".cache" / "collections"), **env},
    )


# ---------------------------------------------------------------- the stage registry
# Resources stages hold while they run (tests/harness/schedule.py: shared or exclusive).
# The demo targets, one resource each: the site and real:checks stages hold both; ee works on the
# Podman one only and real:upgrade on the Docker one only, so those two run side by side.
DEMO_PODMAN = "demo-target-podman"  # nanoclaw-demo (v2 on rootless Podman)
DEMO_DOCKER = "demo-target-docker"  # nanoclaw-demo-docker (v1 on Docker, then v2 after real:upgrade)
DOCKER0 = "docker0"  # this machine's dockerd's bridge; a dockerd with "bridge": "none" in this namespace deletes it
K8S_CLUSTER = "k8s-cluster"  # the test cluster's daemons, ports and node bridge (one per checkout)
DEMO = ((DEMO_PODMAN, EXCLUSIVE), (DEMO_DOCKER, EXCLUSIVE))
ANSIBLE_TEST = (("ansible-test", EXCLUSIVE),)  # ~/.ansible/test: ansible-test's venvs and pip bootstrap
BENCH = ((K8S_CLUSTER, EXCLUSIVE), *DEMO, (DOCKER0, EXCLUSIVE))

# Each stage's `estimate`: its cold wall time in seconds on the 2-core test machine, measured with the
# stages in sequence while other engineers' runs loaded the machine (the cold baseline of 2026-12-01,
# else the figures of docs/TESTING.md and docs/KUBERNETES.md). They only order the stages (longest
# path first) and feed `./run --plan`'s projection; nothing waits for them.
MOLECULE_ESTIMATES = {
    # The cold run of 2026-12-02 13:33 (four lanes, pipelined podman connection, the role's
    # engine-independent logic on one nanoclaw_podman target): 1697, 773, 1206, 668 and 126 s.
    "nanoclaw_podman": 1700,
    "nanoclaw_docker": 780,
    "agent_image_docker": 670,
    "agent_image_podman": 1210,
    "preflight": 130,
}
# Each agent_image scenario pushes to a registry of its own (its verify stops and restarts it): this
# port's offset from NANOCLAW_REGISTRY_PORT (the demo targets' registry).
AGENT_IMAGE_PORT_OFFSET = {"agent_image_podman": 2, "agent_image_docker": 3}


def molecule_stage(scenario: str) -> Stage:
    needs = ["images"]
    uses: list[tuple[str, str]] = []
    env: tuple[tuple[str, str], ...] = ()
    if scenario.startswith("agent_image_"):
        needs.append("registries")
        offset = AGENT_IMAGE_PORT_OFFSET.get(scenario, 4)
        env = (("NANOCLAW_REGISTRY_PORT", str(registry.PUSH_PORT + offset)),)
    if scenario.startswith("nanoclaw_"):
        needs.append("fixture-repos")
    if scenario == "agent_image_docker":
        # Its targets' dockerds run in this namespace with "bridge": "none" and delete docker0 when they start.
        uses.append((DOCKER0, EXCLUSIVE))
    return Stage(
        f"molecule:{scenario}",
        lambda report: stage_molecule(report, scenario),
        needs=tuple(needs),
        uses=tuple(uses),
        estimate=MOLECULE_ESTIMATES.get(scenario, 600),
        env=env,
        doc=f"molecule test -s {scenario}",
    )


def stage_registry() -> dict[str, Stage]:
    """Every stage `./run` knows, by name, with what it needs (tests/harness/schedule.py)."""
    stages = [
        Stage(
            "k8s:build", stage_k8s_build, estimate=540, doc="the Kubernetes binaries and kube-router from Go modules"
        ),  # cold run 2026-12-02 13:33, four lanes, plus kube-router (81 s alone, -p 1)
        Stage("setup", stage_setup, estimate=108, doc="the project virtualenv, the collection link"),
        Stage("host", stage_host, needs=("setup",), estimate=41, doc="engines and tools from Debian packages"),
        Stage("images", stage_images, needs=("host",), estimate=282, doc="the Debian 12 and 13 target images"),
        Stage("lint", stage_lint, needs=("setup",), estimate=167, doc="yamllint, ruff, ansible-lint"),
        # The ansible-test stages share ~/.ansible/test (its venvs and the pip bootstrap): one at a time.
        Stage("sanity", stage_sanity, needs=("setup",), uses=ANSIBLE_TEST, estimate=474, doc="ansible-test sanity, newest ansible-core"),
        Stage(
            "sanity:floor",
            stage_sanity_floor,
            needs=("setup",),
            uses=ANSIBLE_TEST,
            estimate=61,
            doc="compile and import of the modules on the oldest target Python they claim",
        ),
        Stage("unit", stage_unit, needs=("setup",), estimate=77, doc="pytest tests/unit"),
        Stage(
            "oldest-core",
            stage_oldest_core,
            needs=("setup",),
            uses=ANSIBLE_TEST,
            estimate=600,
            doc="sanity (but pylint) and tests/unit/plugins with the oldest ansible-core claimed",
        ),
        Stage(
            "build",
            stage_build,
            needs=("setup",),
            estimate=380,
            doc="the tarball, installed offline, imported by galaxy-importer",
        ),
        Stage(
            "integration:fixtures",
            stage_integration_fixtures,
            needs=("images",),
            uses=((DOCKER0, SHARED),),
            estimate=83,
            doc="dockerd, the rootless test user, the fixture agent images",
        ),
        Stage(
            "integration:modules",
            stage_integration_modules,
            needs=("integration:fixtures",),
            uses=((DOCKER0, SHARED),),
            estimate=230,  # cold run 2026-12-02 13:33, four lanes
            doc="runtime_compat and agent_smoke against Docker and rootless Podman",
        ),
        Stage("registries", stage_registries, needs=("images",), estimate=60, doc="the loopback push registry and seeded mirror"),
        Stage("fixture-repos", stage_fixture_repos, needs=("host",), estimate=60, doc="FIXTURE repositories and Node tarball, served"),
        Stage(
            "ee:image", stage_ee_image, needs=("images",), estimate=280, doc="the EE base and the EE (ansible-builder)"
        ),  # cold run 2026-12-02 13:33, four lanes
        Stage(
            "site:first-run",
            lambda report: stage_site(report, runs=("first run",)),
            needs=("images", "registries", "fixture-repos"),
            uses=DEMO,
            # Cold: 3169 s next to three lanes at equal priority (2026-12-02), most of it two native
            # builds of better-sqlite3 (npm ci, pnpm install) sharing 2 cores with everything else.
            estimate=960,  # cold run 2026-12-02 13:33, four lanes
            doc="the demo targets, site.yml once",
        ),
        Stage(
            "real:checks",
            lambda report: stage_real(report, "checks"),
            needs=("site:first-run",),
            uses=DEMO,
            # 24 s in the cold run of 2026-12-03, plus image.yml and compat_smoke.yml alone: 51 and 83 s
            # next to the cold run's other lanes (10 and 12 s on the idle machine).
            estimate=160,
        ),
        Stage(
            "site:second-run",
            # The rerun proves changed=0 of the provisioning after NanoClaw ran; it skips the
            # read-only compat and smoke checks (tags compat,smoke), as users' scheduled reruns can:
            # site:first-run ran them on both targets, ee runs them again on the Podman target and
            # real:upgrade's rerun on the Docker target (v2).
            lambda report: site_playbook(report, "site:second-run", extra=("--skip-tags", "compat,smoke"), unchanged=True),
            needs=("site:first-run",),
            after=("real:checks",),
            uses=DEMO,
            estimate=235,  # cold run 2026-12-02 13:33, four lanes
            doc="site.yml again: changed=0",
        ),
        Stage(
            "real:drift",
            lambda report: stage_real(report, "drift"),
            needs=("site:second-run",),
            uses=((DEMO_PODMAN, EXCLUSIVE),),
            estimate=220,
            doc="drift on the Podman target, repaired by a rerun",
        ),
        Stage(
            "ee",
            stage_ee,
            needs=("ee:image",),
            # After real:drift: its changed=0 run proves the drift left nothing behind.
            after=("site:second-run", "real:drift"),
            uses=((DEMO_PODMAN, EXCLUSIVE),),
            estimate=240,
            doc="site.yml from inside the EE",
        ),
        Stage(
            "real:upgrade",
            lambda report: stage_real(report, "upgrade"),
            needs=("site:first-run",),
            after=("site:second-run",),
            uses=((DEMO_DOCKER, EXCLUSIVE),),
            estimate=510,  # cold run 2026-12-02 13:33, four lanes
            doc="v1 to v2 with upgrade.yml, then site.yml: changed=0",
        ),
        Stage(
            "k8s:a",
            lambda report: stage_k8s(report, "a"),
            needs=("host", "k8s:build"),
            uses=((K8S_CLUSTER, EXCLUSIVE),),
            estimate=470,  # cold run 2026-12-02 13:33, four lanes
            doc="the kubernetes role against a real control plane",
        ),
        Stage(
            "k8s:b",
            lambda report: stage_k8s(report, "b"),
            needs=("host", "k8s:build", "integration:fixtures"),
            after=("k8s:a",),
            uses=((K8S_CLUSTER, EXCLUSIVE), (DOCKER0, SHARED)),
            estimate=450,  # 404 s warm alone on 2026-12-03 with the second node and the policy tests
            doc="agent Jobs on two real nodes, policies enforced",
        ),
        *(molecule_stage(scenario) for scenario in molecule_scenarios(include_manual=True)),
        # The benchmark starts the cluster, engines of this machine and targets of its own: alone with them.
        Stage(
            "bench",
            lambda report: stage_bench(report, smoke=False),
            needs=("images",),
            uses=BENCH,
            estimate=3600,
            doc="docs/PERFORMANCE.md",
        ),
        Stage("bench:smoke", lambda report: stage_bench(report, smoke=True), needs=("images",), uses=BENCH, estimate=900),
    ]
    return {s.name: s for s in stages}


NOT_IN_TEST = ("bench", "bench:smoke")


def plan(args: list[str]) -> list[str]:
    """Stage names of ``./run ARGS``: an alias (test, site, bench, molecule) or stage names."""
    known = stage_registry()
    if not args or args == ["test"]:
        manual = {f"molecule:{s}" for s in molecule_scenarios(include_manual=True)} - {f"molecule:{s}" for s in molecule_scenarios()}
        return [n for n in known if n not in NOT_IN_TEST and n not in manual]
    if args == ["site"]:
        return ["setup", "host", "images", "site:first-run", "site:second-run"]
    if args == ["bench"]:
        return ["setup", "host", "images", "bench"]
    names: list[str] = []
    for arg in args:
        expanded = [f"molecule:{s}" for s in molecule_scenarios()] if arg == "molecule" else [arg]
        for name in expanded:
            if name not in known:
                print(__doc__)
                raise SystemExit(f"unknown stage {name!r}")
            if name not in names:
                names.append(name)
    return names


def jobs() -> int:
    """How many stages run at once: NANOCLAW_JOBS, default 4. On 2 cores the stages spend more than half
    their time waiting for downloads, dpkg, image layers and containers to start (docs/TESTING.md:
    about 150 CPU-minutes in about 300 minutes of stage time), so a fourth lane turns waiting into work."""
    return max(1, int(os.environ.get("NANOCLAW_JOBS", "4")))


def nice_others() -> int:
    """The nice value of the stages off the plan's longest paths: NANOCLAW_NICE, default 10 (0: all
    stages alike). The run is bound by CPU on 2 cores; at equal priority the chain it waits for
    (images, site:first-run, its reruns) got a fraction of a core next to three other lanes, and
    site:first-run's native builds alone took 36 minutes of a cold run."""
    return max(0, min(19, int(os.environ.get("NANOCLAW_NICE", "10"))))


def print_plan(args: list[str]) -> None:
    """`./run --plan ARGS`: the stages, what each waits for and holds, and the order the scheduler
    would run them in with NANOCLAW_JOBS lanes if every stage took its (cold) estimate."""
    known = stage_registry()
    stages = [known[n] for n in plan(args)]
    names = {s.name for s in stages}
    print(f"{'stage':<28} {'est.':>6}  waits for / holds")
    for s in stages:
        waits = [d for d in s.needs if d in names] + [f"(after {d})" for d in s.after if d in names]
        holds = [f"{r} {m}" for r, m in s.uses]
        print(f"{s.name:<28} {s.estimate / 60:5.1f}m  {', '.join(waits) or '-'}" + (f"  | {', '.join(holds)}" if holds else ""))
    slots = simulate(stages, jobs())
    print(f"\nschedule with NANOCLAW_JOBS={jobs()} (estimates, every stage passing):")
    for slot in sorted(slots, key=lambda x: (x.start, x.name)):
        print(f"  {slot.start / 60:6.1f}m - {slot.end / 60:6.1f}m  {slot.name}")
    print(f"projected wall time: {max((x.end for x in slots), default=0.0) / 60:.1f} min")


# ---------------------------------------------------------------- main
def lane_main(argv: list[str]) -> int:
    """`./run --lane NAME SEED RESULT`: one stage in a process of its own (tests/harness/lanes.py)."""
    name, seed, result = argv[0], Path(argv[1]), Path(argv[2])
    report = Report(lanes.read_rows(seed))
    known = len(report.stages)
    try:
        stage_registry()[name].run(report)
    finally:
        lanes.write_rows(result, report.stages[known:])
    return 0


def lane_command(stage: Stage, seed: Path, result: Path) -> list[str]:
    return [sys.executable, "-u", "-m", "tests.harness.cli", "--lane", stage.name, str(seed), str(result)]


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        print("stages: " + " ".join(stage_registry()))
        return 0
    if argv[:1] == ["--lane"]:
        return lane_main(argv[1:])
    if argv[:1] == ["--plan"]:
        print_plan(argv[1:])
        return 0
    if argv[:1] == ["--graph"]:
        known = stage_registry()
        print(mermaid(known[n] for n in plan(argv[1:])))
        return 0
    if argv == ["down"]:
        demo.remove()
        services.stop_all()
        return 0
    names = plan(argv)
    if any(n.startswith("molecule:") for n in names) and (not argv or argv in (["test"], ["molecule"])):
        report_manual_scenarios()
    known = stage_registry()
    report = Report()
    started, origin, cpu_before = time.monotonic(), time.time(), lanes.busy_cpu_seconds()
    # What is up before the run stays up after it; what the run starts, it stops (not `./run site`).
    daemons_before = services.alive()
    demo_before = demo.container_ids()
    try:
        lanes.run_plan([known[n] for n in names], jobs(), report, lane_command, OUTPUT, nice_others=nice_others())
    finally:
        if argv != ["site"]:
            services.stop_started()
            services.stop_new(daemons_before)
            demo.remove_new(demo_before)
    wall = time.monotonic() - started
    print(report.summary(wall=wall, origin=origin))
    print(f"wall time {wall:.1f} s")
    cpu, cores = lanes.busy_cpu_seconds() - cpu_before, os.cpu_count() or 1
    print(f"machine CPU busy {cpu:.0f} s of {wall * cores:.0f} s ({cores} cores): {100 * cpu / max(1.0, wall * cores):.0f} %")
    failed = report.failed
    print(f"{report.passed} passed, {failed} failed" + (f", {report.skipped} skipped" if report.skipped else ""))
    return 1 if failed or any(s.error for s in report.stages) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
