"""Verify nanoclaw.provision.nanoclaw on the molecule targets.

Debian 12 runs the v1 FIXTURE (Node from a checksummed tarball, repository over file://),
Debian 13 the v2 FIXTURE (distribution Node, pnpm with npm, repository over git daemon),
both on rootless Podman (nanoclaw_podman, the podman role) or Docker (nanoclaw_docker, the
docker role). Bad input, version bumps and the data
test are real ansible-playbook runs of the role (conftest.run_role).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import testinfra
from conftest import (
    ENGINE,
    FIXTURE,
    HOME,
    PROJECT,
    USER,
    as_user,
    container_of,
    engine,
    ensure_standin_image,
    generation,
    image_name,
    logic_target,
    main_pid,
    remove_containers,
    run_module,
    run_role,
    slug,
    state,
    status,
    targets,
    unit_name,
)

# The scenario's .env input (vars/main.yml), as NanoClaw must read it back.
ASSISTANT = ' Andy "the" $HOME #1 '
EXPECTED_ENV = {
    "v1": {
        "ASSISTANT_NAME": ASSISTANT,
        "ASSISTANT_HAS_OWN_NUMBER": "true",
        "ONECLI_URL": "http://127.0.0.1:10254",
        "ONECLI_API_KEY": 'oc-"key" $(not-run) `not-run` #x\\n',
        "TZ": "Europe/Berlin",
    },
    "v2": {
        "ASSISTANT_NAME": ASSISTANT,
        "ANTHROPIC_BASE_URL": "https://llm.example.invalid/v1",
        "ASSISTANT_HAS_OWN_NUMBER": "true",
        "ONECLI_URL": "http://127.0.0.1:10254",
        "ONECLI_API_KEY": 'oc-"key" $(not-run) `not-run` #x\\n',
        "TZ": "Europe/Berlin",
    },
}


def _gen(host) -> str:
    return generation(container_of(host))


def _wait_for_status(host, pid: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            current = status(host)
            if current["pid"] == pid:
                return current
        except (json.JSONDecodeError, AssertionError, KeyError):
            pass
        time.sleep(1)
    raise AssertionError(f"the fixture host program (pid {pid}) wrote no status within {timeout} s")


# ------------------------------------------------------------------ converge
def test_service_unit_is_active_and_its_process_alive(host):
    gen = _gen(host)
    unit = unit_name(gen)
    assert as_user(host, f"systemctl --user is-active {unit}").stdout.strip() == "active"
    assert as_user(host, f"systemctl --user is-enabled {unit}").stdout.strip() == "enabled"
    pid = main_pid(host, gen)
    assert pid > 0
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
    assert f"{PROJECT}/dist/index.js" in cmdline
    assert host.check_output(f"stat -c %U /proc/{pid}") == USER
    current = _wait_for_status(host, pid)
    assert current["docker_info"] == "ok"  # the host program's `docker info` succeeded through the wrapper
    assert current["generation"] == gen
    assert current["version"] in FIXTURE[gen]["versions"]


def test_unit_is_named_and_written_as_upstream_does(host):
    gen = _gen(host)
    unit = host.file(f"{HOME}/.config/systemd/user/{unit_name(gen)}")
    assert unit.exists
    text = unit.content_string
    node = "/opt/nanoclaw-node/current/bin/node" if gen == "v1" else "/usr/bin/node"
    for line in (
        "Type=simple",
        f"WorkingDirectory={PROJECT}",
        f"ExecStart={node} {PROJECT}/dist/index.js",
        "Restart=always",
        "RestartSec=5",
        "KillMode=process",
        f"StandardOutput=append:{PROJECT}/logs/nanoclaw.log",
        f"StandardError=append:{PROJECT}/logs/nanoclaw.error.log",
        f'Environment="CONTAINER_IMAGE={image_name(gen)}"',
        'Environment="NANOCLAW_NO_DIAGNOSTICS=1"',
        # 2 concurrent containers x 4096 MiB + 2048 MiB
        "MemoryMax=10240M",
        "WantedBy=default.target",
    ):
        assert line in text.splitlines(), f"{line!r} missing from the unit"
    assert f'Environment="PATH=/usr/local/libexec/nanoclaw-provision/{slug()}:' in text
    # v1 reads these from its environment; v2 never reads them, so its unit leaves them out.
    for line in (
        'Environment="MAX_CONCURRENT_CONTAINERS=2"',
        'Environment="CONTAINER_TIMEOUT=1800000"',
        'Environment="IDLE_TIMEOUT=1800000"',
    ):
        assert (line in text.splitlines()) == (gen == "v1"), line
    assert host.file(f"/var/lib/systemd/linger/{USER}").exists
    slice_cap = host.file(f"/etc/systemd/system/user-{host.user(USER).uid}.slice.d/50-nanoclaw.conf")
    assert "MemoryMax=10240M" in slice_cap.content_string


def test_checkout_is_the_pin_and_the_build_is_recorded(host):
    gen = _gen(host)
    head = as_user(host, f"git -C {PROJECT} rev-parse HEAD").stdout.strip()
    record = json.loads(host.file(f"{HOME}/.local/state/nanoclaw-provision/{slug()}/build.json").content_string)
    assert record["commit"] == head
    assert head in (FIXTURE[gen]["first"], FIXTURE[gen]["second"])
    assert record["generation"] == gen
    assert host.file(f"{HOME}/.local/state/nanoclaw-provision/{slug()}/build.json").mode == 0o600


def test_install_result_is_recorded_as_a_local_fact(host):
    """The role's result nanoclaw_install, as the agent image and the checks take it, and as a run
    whose tags skip the role's tasks (site.yml --tags image) reads it back: the checkout, its
    generation, slug, unit and image as upstream names them, and the data paths."""
    gen = _gen(host)
    fact = host.file("/etc/ansible/facts.d/nanoclaw_install.fact")
    assert (fact.user, fact.group, fact.mode) == ("root", "root", 0o644)
    head = as_user(host, f"git -C {PROJECT} rev-parse HEAD").stdout.strip()
    origin = as_user(host, f"git -C {PROJECT} config --get remote.origin.url").stdout.strip()
    user = host.user(USER)
    unit = unit_name(gen)
    assert json.loads(fact.content_string) == {
        "present": True,
        "root": PROJECT,
        "commit": head,
        "version": FIXTURE[gen]["versions"][0 if head == FIXTURE[gen]["first"] else 1],
        "generation": gen,
        "slug": slug(),
        "unit": unit,
        "unit_file": f"{HOME}/.config/systemd/user/{unit}",
        "image": image_name(gen),
        "origin": origin,
        "user": USER,
        "uid": str(user.uid),
        "gid": str(user.gid),
        "home": HOME,
        "groups": f"{PROJECT}/groups",
        "data": f"{PROJECT}/data",
        "store": f"{PROJECT}/store",
        "logs": f"{PROJECT}/logs",
        "dotenv": f"{PROJECT}/.env",
    }


def test_dotenv_exact_content_and_mode(host):
    gen = _gen(host)
    env = host.file(f"{PROJECT}/.env")
    assert env.user == USER
    assert env.mode == 0o600
    managed = [line for line in env.content_string.splitlines() if not line.startswith(("CUSTOM_", "#"))]
    assert managed == [f'{k}="{v}"' for k, v in EXPECTED_ENV[gen].items()]
    # ... and read back exactly by the fixture host program, with NanoClaw's .env rules.
    pid = main_pid(host, gen)
    read_back = _wait_for_status(host, pid)["env"]
    for key, value in EXPECTED_ENV[gen].items():
        assert read_back[key] == value


def test_mount_allowlist_content_and_mode(host):
    f = host.file(f"{HOME}/.config/nanoclaw/mount-allowlist.json")
    assert f.user == USER
    assert f.mode == 0o600
    assert json.loads(f.content_string) == {
        "allowedRoots": [
            {"path": f"{HOME}/projects", "allowReadWrite": True, "description": "Projects the agents work on"},
            {"path": "/srv/shared", "allowReadWrite": False, "description": "Shared documents, read-only"},
        ],
        "blockedPatterns": [".vault"],
        "nonMainReadOnly": True,
    }
    assert host.file(f"{HOME}/projects").is_directory
    assert host.file(f"{HOME}/projects").user == USER


def _limits_dropped(host) -> bool:
    """Rootless Podman on cgroup v1 cannot apply --memory/--cpus/--pids-limit (it drops them with a warning)."""
    return ENGINE == "podman" and not host.file("/sys/fs/cgroup/cgroup.controllers").exists


def _wrapper() -> str:
    return f"/usr/local/libexec/nanoclaw-provision/{slug()}/docker"


def test_docker_wrapper_hardens_every_container_whatever_the_image_or_argv(host):
    """Issue 16.3: `run`, `container run`, `create` and any image name (v2's per-group tags too) are hardened."""
    gen = _gen(host)
    wrapper = _wrapper()
    image = image_name(gen)
    ensure_standin_image(host, image)
    # v2's per-agent-group image (nanoclaw-agent-v2-<slug>:<agentGroupId>), a fully qualified and a
    # localhost/ name: the old wrapper matched none of them.
    names = [f"nanoclaw-agent-v2-{slug()}:ag-1764000000000-x1", "docker.io/library/nanoclaw-standin:latest", "localhost/other:latest"]
    for tag in names:
        r = engine(host, f"tag {image} {tag}")
        assert r.rc == 0, r.stderr
    runs = {
        "nanoclaw-harden-run": f"run -d --name nanoclaw-harden-run {image} sleep 300",
        "nanoclaw-harden-group": f"container run -d --name nanoclaw-harden-group {names[0]} sleep 300",
        "nanoclaw-harden-qualified": f"run -d --name nanoclaw-harden-qualified {names[1]} sleep 300",
        "nanoclaw-harden-created": f"create --name nanoclaw-harden-created {names[2]} sleep 300",
    }
    remove_containers(host, *runs)
    try:
        outputs = {}
        for name, args in runs.items():
            r = as_user(host, f"{wrapper} {args}")
            assert r.rc == 0, f"{args}: {r.stderr}"
            outputs[name] = r
        started = as_user(host, f"{wrapper} start nanoclaw-harden-created")
        assert started.rc == 0, started.stderr
        for name in runs:
            config = json.loads(engine(host, f"inspect {name}").stdout)[0]["HostConfig"]
            keys = ("NanoCpus", "Memory", "PidsLimit", "ReadonlyRootfs", "Tmpfs", "CapDrop", "SecurityOpt")
            print(f"[{container_of(host)}] {name}:", {k: config.get(k) for k in keys})
            assert config["ReadonlyRootfs"] is True, name
            assert {"/tmp", "/home/node"} <= set(config.get("Tmpfs") or {}), name
            assert any("no-new-privileges" in opt for opt in config.get("SecurityOpt") or []), name
            # Inside: read-only root, writable /tmp and home, no capabilities.
            root_write = engine(host, f"exec {name} sh -c ': > /x'")
            assert "Read-only file system" in root_write.stderr, root_write.stderr
            for writable in ("/tmp/x", "/home/node/x"):
                w = engine(host, f"exec {name} sh -c ': > {writable}'")
                assert w.rc == 0, f"{name} {writable}: {w.stderr}"
            capeff = engine(host, f"exec {name} cat /proc/self/status").stdout
            assert re.search(r"^CapEff:\s*0+$", capeff, re.M), capeff
            if _limits_dropped(host):
                assert "Resource limits are not supported and ignored on cgroups V1 rootless systems" in outputs[name].stderr
            else:
                assert config["NanoCpus"] == 2_000_000_000, name
                assert config["Memory"] == 4096 * 1024 * 1024, name
                assert config["PidsLimit"] == 256, name
    finally:
        remove_containers(host, *runs)


OVERRIDES = [
    ("--memory", "run --memory=0 --name nanoclaw-override {image} true"),
    ("--privileged", "run --rm --name nanoclaw-override --privileged {image} true"),
    ("--cap-add", "container run --name nanoclaw-override --cap-add=ALL {image} true"),
    ("--security-opt", "create --name nanoclaw-override --security-opt seccomp=unconfined {image} true"),
    ("--pids-limit", "run --name nanoclaw-override --pids-limit=-1 {image} true"),
    ("global option -H", "-H unix:///var/run/docker.sock run --name nanoclaw-override {image} true"),
    ("the command update", "update --memory=0 nanoclaw-override"),
]


def test_docker_wrapper_refuses_overrides_and_the_engine_never_sees_them(host):
    """Issue 16.3, through the real engine: an override fails (exit 125) and no container is made."""
    gen = _gen(host)
    image = image_name(gen)
    ensure_standin_image(host, image)
    remove_containers(host, "nanoclaw-override")
    for named, args in OVERRIDES:
        r = as_user(host, f"{_wrapper()} {args.format(image=image)}")
        EVIDENCE.append(f"[{container_of(host)}] wrapper {args.format(image=image)!r}: rc {r.rc} {r.stderr.strip()!r}")
        assert r.rc == 125, (args, r.rc, r.stdout, r.stderr)
        assert "nanoclaw docker wrapper: refused:" in r.stderr, r.stderr
        assert named in r.stderr, r.stderr
        left = engine(host, "ps -a --filter name=nanoclaw-override --format '{{.Names}}'")
        assert left.stdout.strip() == "", f"{args} created {left.stdout!r}"


def test_claude_code_writes_its_state_through_the_hardened_wrapper(host):
    """Issue 14.2: the FIXTURE /claude-state (files/claude-state) writes ~/.claude.json (atomically, beside
    it in $HOME), ~/.claude/ and /tmp as Claude Code does at start, run through the wrapper as the
    service user with NanoClaw's own ~/.claude mount and user mapping (container-runner.ts)."""
    gen = _gen(host)
    image = image_name(gen)
    ensure_standin_image(host, image)
    user = host.user(USER)
    # Where NanoClaw keeps a group's Claude state: v1 data/sessions/<group>/.claude, v2
    # data/v2-sessions/<agentGroupId>/.claude-shared; a directory of the test's own here.
    state = f"{HOME}/fixture-claude-state"
    as_user(host, f"rm -rf {state} && mkdir -p {state}")
    # Upstream passes --user UID:GID -e HOME=/home/node when the host uid is neither 0 nor 1000, and
    # the image's USER is node (1000) otherwise; the stand-in image has no USER: always pass it.
    mapping = f"--user {user.uid}:{user.gid} -e HOME=/home/node "
    remove_containers(host, "nanoclaw-claude-state")
    r = as_user(
        host,
        f"{_wrapper()} run --rm --name nanoclaw-claude-state {mapping}-v {state}:/home/node/.claude "
        f"--entrypoint /bin/sh {image} /claude-state",
    )
    EVIDENCE.append(f"[{container_of(host)}] claude-state through the wrapper: rc {r.rc} {r.stdout.strip()!r} {r.stderr.strip()[-300:]!r}")
    assert r.rc == 0, r.stdout + r.stderr
    assert "claude-state: ok home=/home/node" in r.stdout, r.stdout
    # ~/.claude is NanoClaw's mount, not shadowed by the home's tmpfs: the session reached the host.
    session = host.file(f"{state}/projects/-workspace-group/fixture-session.jsonl")
    assert session.exists
    assert session.user == USER
    as_user(host, f"rm -rf {state}")


def test_cgroup_enforces_the_memory_limit(host):
    """Whether the kernel enforces --memory: rootless Podman on cgroup v1 cannot (reported, not faked)."""
    gen = _gen(host)
    wrapper = _wrapper()
    ensure_standin_image(host, image_name(gen))
    remove_containers(host, "nanoclaw-limits-cg")
    r = as_user(host, f"{wrapper} run -d --name nanoclaw-limits-cg {image_name(gen)} sleep 300")
    assert r.rc == 0, r.stderr
    try:
        pid = engine(host, "inspect -f '{{.State.Pid}}' nanoclaw-limits-cg").stdout.strip()
        cgroups = host.file(f"/proc/{pid}/cgroup").content_string
        print(f"container pid {pid} cgroups:\n{cgroups}")
        if _limits_dropped(host):
            EVIDENCE.append(f"[{container_of(host)}] cgroup v1: limits not enforced; container cgroups {cgroups!r}")
            pytest.skip(
                "host capability missing: cgroup v1 (hybrid) -- rootless Podman ignores --memory/--cpus/--pids-limit "
                f"here: it drops them with a warning "
                f"(HostConfig shows 0, see the wrapper test), so the kernel enforces none. cgroups: {cgroups!r}"
            )
        # The kernel's value, read from the container's own cgroup (v2 memory.max, v1 limit_in_bytes).
        limit = engine(
            host,
            "exec nanoclaw-limits-cg sh -c 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes'",
        )
        assert limit.rc == 0, limit.stderr
        EVIDENCE.append(f"[{container_of(host)}] {ENGINE}: the agent container's cgroup memory limit is {limit.stdout.strip()}")
        assert limit.stdout.strip() == str(4096 * 1024 * 1024)
    finally:
        remove_containers(host, "nanoclaw-limits-cg")


def test_agent_smoke_passes_through_the_hardened_wrapper(host):
    """agent_smoke runs the (stand-in) agent as NanoClaw would: through the wrapper on the service's PATH."""
    gen = _gen(host)
    wrapper = f"/usr/local/libexec/nanoclaw-provision/{slug()}/docker"
    ensure_standin_image(host, image_name(gen))
    args = {
        "image": image_name(gen),
        "contract": gen,
        "executable": wrapper,
        "user": USER,
        # Podman 4.3 (Debian 12) rejects --add-host host-gateway.
        "host_gateway": ENGINE == "docker" and gen == "v2",
    }
    if gen == "v2":
        args["install_slug"] = slug()
        # The session directory belongs to the service user; the stand-in image's user is
        # root, which --cap-drop=ALL leaves without the right to write there. NanoClaw's
        # agent runs as the host user's uid (node, 1000): so does the stand-in here.
        user = host.user(USER)
        args["extra_args"] = ["--user", f"{user.uid}:{user.gid}"]
    result = run_module(container_of(host), "nanoclaw.provision.agent_smoke", args)
    print(f"[{container_of(host)}] agent_smoke: {json.dumps({k: result.get(k) for k in ('failure', 'msg', 'output', 'timings')})}")
    assert not result.get("unreachable"), result
    if gen == "v1":
        assert not result.get("failed"), result
        assert result.get("failure") is None, result
        # The stand-in agent reports what its container looked like from inside.
        assert result["output"]["status"] == "success"
        assert result["output"]["result"] == "rootfs=read-only capeff=0000000000000000"
    else:
        # The busybox stand-in runs as bun would, through the hardened wrapper, and heartbeats,
        # but has no SQLite to mark the smoke message completed in outbound.db: agent_smoke says
        # exactly that. The whole v2 contract through this wrapper is proven on the real NanoClaw
        # (site.yml's compat_smoke on the demo's v2 host, with the FIXTURE agent of tests/fixtures/agent).
        assert result["heartbeat"] is True, result
        assert result.get("failure") == "not_acknowledged", result
        assert result["leftover_containers"] == []


# ------------------------------------------------------------------ real runs
# Each run drives the role on both targets at once (one ansible-playbook, one host each).


def _hosts():
    return {name: testinfra.get_host(f"podman://{name}") for name in targets()}


def _states() -> dict:
    return {name: state(h, generation(name)) for name, h in _hosts().items()}


def _logic_host():
    """The target of the role_logic tests and its testinfra host (conftest.logic_target)."""
    name = logic_target()
    return name, testinfra.get_host(f"podman://{name}")


role_logic = pytest.mark.role_logic


# Checked together before anything else (validate.yml reports every problem of the input at once).
INPUT_PROBLEMS = (
    {
        "nanoclaw_version": "main",
        "nanoclaw_onecli_api_key": "SECRET-LINE-1\nSECRET-LINE-2",
        "nanoclaw_anthropic_api_key": "SECRET-LINE-1\nSECRET-LINE-2",
        "nanoclaw_max_concurrent_containers": 100000,
        "nanoclaw_node_install_method": "tarball",
        "nanoclaw_node_tarball_checksum": "",
    },
    [
        'nanoclaw_version must be a full 40-character lowercase commit SHA, got "main"',
        "nanoclaw_anthropic_api_key, nanoclaw_onecli_api_key: a .env value cannot contain a newline",
        "memory formula exceeds the host: nanoclaw_max_concurrent_containers (100000) x nanoclaw_agent_memory_mib (4096)",
        "nanoclaw_node_install_method=tarball needs nanoclaw_node_tarball_url and nanoclaw_node_tarball_checksum",
    ],
)

BAD_INPUTS = [
    ("input_problems_together", *INPUT_PROBLEMS),
    (
        "unknown_commit",
        {"nanoclaw_version": "0123456789abcdef0123456789abcdef01234567"},
        ["nanoclaw_version: 0123456789abcdef0123456789abcdef01234567 could not be checked out from nanoclaw_repo_url"],
    ),
    (
        "unreachable_repo",
        {"nanoclaw_repo_url": "git://127.0.0.1:9/nowhere.git", "nanoclaw_version": "0123456789abcdef0123456789abcdef01234567"},
        ["nanoclaw_repo_url: cannot reach git://127.0.0.1:9/nowhere.git"],
    ),
    (
        # Read from the checkout, so refused after it; the rescue puts the previous commit back.
        "unknown_major",
        {"__fixture_commit": "unknown_major"},
        ['has package.json version "3.0.0", which is not NanoClaw v1 or v2'],
    ),
    (
        # v1.2.53 and v2.0.64 read credentials through OneCLI; a key they never read is refused.
        "unread_env_key",
        {"nanoclaw_anthropic_api_key": "sk-ant-never-read", "nanoclaw_claude_code_oauth_token": "never-read"},
        [
            "nanoclaw_anthropic_api_key, nanoclaw_claude_code_oauth_token: NanoClaw v",
            "does not read ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN from .env",
            "set nanoclaw_onecli_url and nanoclaw_onecli_api_key instead",
        ],
    ),
    (
        "allowlist_root_under_ssh",
        {"nanoclaw_mount_allowlist_roots": [{"path": "~/.ssh/work"}]},
        ["nanoclaw_mount_allowlist_roots: allowed_roots[0].path: '~/.ssh/work' matches the blocked pattern '.ssh'"],
    ),
    (
        "allowlist_symlink_into_ssh",
        {"nanoclaw_mount_allowlist_roots": [{"path": "~/innocent"}]},
        [
            "nanoclaw_mount_allowlist_roots: allowed_roots[0].path: '~/innocent' (it resolves to '/home/nanoclaw/.ssh')"
            " matches the blocked pattern '.ssh'"
        ],
    ),
    (
        "allowlist_missing_root",
        {"nanoclaw_mount_allowlist_roots": [{"path": "/srv/does-not-exist"}]},
        ["nanoclaw_mount_allowlist_roots: allowed_roots[0].path: '/srv/does-not-exist' does not exist"],
    ),
    (
        "absolute_container_path",
        {"nanoclaw_mount_allowlist_mounts": [{"host_path": "/srv/shared/docs", "container_path": "/workspace/docs"}]},
        ["nanoclaw_mount_allowlist_mounts: mounts[0].container_path: container path '/workspace/docs' must be relative"],
    ),
    (
        "dotdot_container_path",
        {"nanoclaw_mount_allowlist_mounts": [{"host_path": "/srv/shared/docs", "container_path": "docs/../../etc"}]},
        ["nanoclaw_mount_allowlist_mounts: mounts[0].container_path: container path 'docs/../../etc' must not contain '..'"],
    ),
]

EVIDENCE: list[str] = []


def _flat(text: str) -> str:
    """Ansible's YAML output folds long messages over lines and doubles quotes inside
    single-quoted scalars: compare with whitespace collapsed and quotes undoubled."""
    return " ".join(text.split()).replace("''", "'")


@pytest.fixture(scope="module", autouse=True)
def _print_evidence():
    """What the tests saw (data digests, messages), kept in tests/output/ for the issue's notes."""
    yield
    text = "\n".join(["EVIDENCE:", *EVIDENCE]) + "\n"
    print("\n" + text)
    out = Path(__file__).resolve().parents[3] / "tests" / "output"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"nanoclaw-evidence-{os.environ.get('MOLECULE_SCENARIO_NAME', 'nanoclaw')}.txt").write_text(text)


@role_logic
@pytest.mark.parametrize(("name", "extra", "messages"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_fails_naming_the_variable_and_changes_nothing(name, extra, messages):
    target, h = _logic_host()
    # the .ssh cases need a real ~/.ssh and a symlink into it
    as_user(h, f"mkdir -p -m 700 {HOME}/.ssh && ln -sfn {HOME}/.ssh {HOME}/innocent")
    before = _states()
    result = run_role(extra, only=target)
    out = _flat(result.stdout + result.stderr)
    assert result.returncode != 0, out[-3000:]
    for message in messages:
        assert message in out, f"{message!r} not reported:\n{out[-5000:]}"
    assert "SECRET-LINE" not in out
    assert _states() == before
    for message in messages:
        start = out.index(message)
        EVIDENCE.append(f"bad input {name} [{target}]: ...{out[max(0, start - 60) : start + 400]}")


V2_TARGETS = [name for name in targets() if generation(name) == "v2"]


# Only where a target runs v2 (nanoclaw_podman's Debian 13): nanoclaw_docker converges v1 only, and a
# test with no target would only be reported as skipped.
if V2_TARGETS:

    @role_logic
    @pytest.mark.parametrize("v2", V2_TARGETS)
    def test_v2_checkout_without_package_manager_fails_naming_the_variable_and_changes_nothing(v2):
        host = _hosts()[v2]
        before = state(host, "v2")
        result = run_role({"__fixture_commit": "no_package_manager"}, only=v2)
        out = _flat(result.stdout + result.stderr)
        assert result.returncode != 0
        message = "nanoclaw_pnpm_version: the checkout at " + FIXTURE["v2"]["no_package_manager"]
        assert message in out, out[-4000:]
        assert "is NanoClaw v2 but its package.json has no packageManager pnpm@<version>" in out
        assert f"The previous build ({before['head']}) was left in place." in out
        assert state(host, "v2") == before
        EVIDENCE.append(f"bad input no_package_manager: {out[out.index(message) : out.index(message) + 300]}")


@role_logic
def test_dirty_checkout_fails_listing_files_and_changes_nothing():
    target, h = _logic_host()
    before = _states()
    as_user(h, f"echo local-edit >> {PROJECT}/README.md")
    try:
        dirty = h.check_output(f"sha256sum {PROJECT}/README.md")
        result = run_role({"__fixture_commit": "second"}, only=target)
        out = _flat(result.stdout + result.stderr)
        assert result.returncode != 0
        message = f"the NanoClaw checkout {PROJECT} has 1 locally modified file(s) outside NanoClaw's runtime data: M README.md"
        assert message in out, out[-4000:]
        # The force it suggests discards code edits only; runtime data is kept either way.
        assert "set nanoclaw_force_checkout=true to discard these code edits" in out
        assert "is kept as it is either way" in out
        assert h.check_output(f"sha256sum {PROJECT}/README.md") == dirty
        assert _states() == before
        EVIDENCE.append(f"bad input dirty_checkout [{target}]: {out[out.index(message) : out.index(message) + 400]}")
    finally:
        as_user(h, f"git -C {PROJECT} checkout -- README.md")


# ------------------------------------------------------------------ data safety
DATA_FILES = [
    "groups/main/CLAUDE.md",
    "groups/family/notes.txt",
    "data/messages.db",
    "data/sessions/abc/session.json",
    "store/auth/creds.json",
    "logs/operator.log",
]


def _data_digest(h) -> str:
    files = " ".join(DATA_FILES)
    return h.check_output(f"cd {PROJECT} && sha256sum {files} .env && stat -c '%n %s %Y' {files} .env")


def test_version_bump_keeps_data_byte_identical_and_activates_the_new_build():
    hosts = _hosts()
    for h in hosts.values():
        as_user(
            h,
            f"cd {PROJECT} && mkdir -p groups/main groups/family data/sessions/abc store/auth logs && "
            "printf '# memory\\nremember the milk\\n' > groups/main/CLAUDE.md && echo family > groups/family/notes.txt && "
            "head -c 65536 /dev/urandom > data/messages.db && echo '{\"s\":1}' > data/sessions/abc/session.json && "
            "echo '{\"creds\":true}' > store/auth/creds.json && echo operator > logs/operator.log && "
            "printf '# operator note\\nCUSTOM_KEY=\"keep me\"\\n' >> .env",
        )
    before = {n: _data_digest(h) for n, h in hosts.items()}
    old_pid = {n: main_pid(h, generation(n)) for n, h in hosts.items()}
    result = run_role({"__fixture_commit": "second"})
    assert result.returncode == 0, result.stdout[-5000:]
    for n, h in hosts.items():
        gen = generation(n)
        after = _data_digest(h)
        EVIDENCE.append(f"data [{n}] before the bump to {FIXTURE[gen]['second'][:12]}:\n{before[n]}\nafter:\n{after}")
        assert after == before[n]
        lines = h.file(f"{PROJECT}/.env").content_string.splitlines()
        assert "# operator note" in lines
        assert 'CUSTOM_KEY="keep me"' in lines
        assert as_user(h, f"git -C {PROJECT} rev-parse HEAD").stdout.strip() == FIXTURE[gen]["second"]
        new_pid = main_pid(h, gen)
        assert new_pid not in (0, old_pid[n])
        current = _wait_for_status(h, new_pid)
        assert current["version"] == FIXTURE[gen]["versions"][1]
        EVIDENCE.append(f"new build [{n}]: MainPID {old_pid[n]} -> {new_pid}, host program reports version {current['version']}")


def _tracked_and_main(host) -> str:
    """git's view of the tracked files and the digests of groups/main/, read as the service user
    (as root git refuses a repository another user owns: "dubious ownership")."""
    found = as_user(host, f"cd {PROJECT} && git status --porcelain --untracked-files=no && sha256sum groups/main/*")
    assert found.rc == 0, found.stderr
    return found.stdout


def test_rerun_after_the_host_changed_tracked_files_changes_nothing():
    """NanoClaw's own changes to files upstream tracks under groups/ (v2's start-up migration,
    src/claude-md-compose.ts: main's CLAUDE.md renamed to CLAUDE.local.md, groups/global/ removed)
    are runtime data: the rerun accepts them, changes nothing and leaves them as they are."""
    hosts = _hosts()
    migrate = f"cd {PROJECT} && mv groups/main/CLAUDE.md groups/main/CLAUDE.local.md && rm -rf groups/global"
    for h in hosts.values():
        as_user(h, migrate)
    try:
        before = {n: _tracked_and_main(h) for n, h in hosts.items()}
        assert all("D groups/global/CLAUDE.md" in b and "D groups/main/CLAUDE.md" in b for b in before.values()), before
        result = run_role({"__fixture_commit": "second"})
        out = result.stdout + result.stderr
        assert result.returncode == 0, out[-5000:]
        recap = dict(re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", out, re.M))
        assert recap, out[-3000:]
        assert all(v == "0" for v in recap.values()), recap
        assert {n: _tracked_and_main(h) for n, h in hosts.items()} == before
        EVIDENCE.append(f"rerun after the host's own changes to tracked files ({', '.join(before)}): changed={recap}")
    finally:
        for h in hosts.values():
            as_user(h, f"cd {PROJECT} && mv groups/main/CLAUDE.local.md groups/main/CLAUDE.md && git checkout -- groups/global")


@role_logic
def test_failed_build_keeps_the_previous_build_running():
    # On both of nanoclaw_podman's targets: v1 builds with npm, v2 with pnpm.
    hosts = _hosts()
    before = _states()
    data = {n: _data_digest(h) for n, h in hosts.items()}
    result = run_role({"__fixture_commit": "broken"})
    out = _flat(result.stdout + result.stderr)
    assert result.returncode != 0
    assert out.count('failed at "Run the build"') >= len(targets()), out[-4000:]
    for n, h in hosts.items():
        gen = generation(n)
        assert f"The previous build ({before[n]['head']}) was left in place." in out
        assert status(h)["version"] == FIXTURE[gen]["versions"][1]
        assert h.file(f"/proc/{before[n]['pid']}").exists
        assert _data_digest(h) == data[n]
    assert _states() == before
    start = out.index('failed at "Run the build"')
    EVIDENCE.append("failed build: ..." + out[max(0, start - 120) : start + 500])


# ------------------------------------------------------------------ uninstall (issue 16.4)
@role_logic
def test_uninstall_refuses_directories_the_role_did_not_make():
    target, h = _logic_host()
    as_user(h, f"mkdir -p {HOME}/.ssh {HOME}/projects && echo key > {HOME}/.ssh/id_test && echo mine > {HOME}/projects/own.txt")
    listing = f"ls -A {HOME} | sort | md5sum; md5sum {HOME}/.ssh/id_test"
    home_before = h.check_output(listing)
    before = _states()
    for install_dir, message in (
        (HOME, f"nanoclaw_install_dir: {HOME} is the home of {USER}, a directory above it or a system directory"),
        ("/home", "nanoclaw_install_dir: /home is the home of"),
        (f"{HOME}/projects", f"nanoclaw_install_dir: {HOME}/projects is not a NanoClaw checkout this role made"),
    ):
        result = run_role({"nanoclaw_state": "absent", "nanoclaw_purge": True, "nanoclaw_install_dir": install_dir}, only=target)
        out = _flat(result.stdout + result.stderr)
        assert result.returncode != 0, out[-3000:]
        assert message in out, f"{message!r} not reported:\n{out[-4000:]}"
        EVIDENCE.append(f"uninstall refused [{target}]: {out[out.index(message) : out.index(message) + 300]}")
    assert h.check_output(listing) == home_before
    assert _states() == before
    assert h.file(f"{HOME}/projects/own.txt").exists


@role_logic
def test_uninstall_refuses_a_checkout_with_local_work():
    target, h = _logic_host()
    before = _states()
    as_user(h, f"echo local-edit >> {PROJECT}/README.md")
    try:
        result = run_role({"nanoclaw_state": "absent"}, only=target)
        out = _flat(result.stdout + result.stderr)
        assert result.returncode != 0
        message = f"the NanoClaw checkout {PROJECT} has 1 locally modified file(s): M README.md — refusing to remove it"
        assert message in out, out[-4000:]
        assert _states() == before
        EVIDENCE.append(f"uninstall of a dirty checkout [{target}]: {out[out.index(message) : out.index(message) + 300]}")
    finally:
        as_user(h, f"git -C {PROJECT} checkout -- README.md")


def test_uninstall_removes_only_the_code_then_purge_only_what_the_role_made():
    """Last: removes the installation. Data, the rest of the home and the record stay; purge then takes the rest."""
    hosts = _hosts()
    for h in hosts.values():
        as_user(h, f"mkdir -p {HOME}/.ssh && echo key > {HOME}/.ssh/id_test")
        # The data the version bump test made, when it ran (alone, this test makes its own).
        for path in DATA_FILES:
            as_user(h, f"cd {PROJECT} && mkdir -p $(dirname {path}) && {{ test -e {path} || echo data > {path}; }}")
    data = {n: _data_digest(h) for n, h in hosts.items()}
    result = run_role({"nanoclaw_state": "absent"})
    assert result.returncode == 0, result.stdout[-5000:]
    for n, h in hosts.items():
        gen = generation(n)
        assert _data_digest(h) == data[n]
        left = sorted(h.check_output(f"ls -A {PROJECT}").split())
        assert left == sorted([".env", "data", "groups", "logs", "store"]), left
        assert h.file(f"{HOME}/.ssh/id_test").exists
        assert not h.file(f"{HOME}/.config/systemd/user/{unit_name(gen)}").exists
        assert not h.file(f"/usr/local/libexec/nanoclaw-provision/{slug()}").exists
        assert h.file(f"{HOME}/.local/state/nanoclaw-provision/{slug()}/checkout.json").exists
        # The code is gone: a run whose tags skip the role must not build an image from it.
        assert not h.file("/etc/ansible/facts.d/nanoclaw_install.fact").exists
    again = run_role({"nanoclaw_state": "absent"})
    assert again.returncode == 0, again.stdout[-5000:]
    purge = run_role({"nanoclaw_state": "absent", "nanoclaw_purge": True})
    assert purge.returncode == 0, purge.stdout[-5000:]
    for h in hosts.values():
        assert not h.file(PROJECT).exists
        assert not h.file(f"{HOME}/.local/state/nanoclaw-provision/{slug()}").exists
        assert h.file(f"{HOME}/.ssh/id_test").exists
        assert h.file(f"{HOME}/.config/nanoclaw/mount-allowlist.json").exists
