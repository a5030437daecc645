"""Verify nanoclaw.provision.nanoclaw on the molecule targets.

Debian 12 runs the v1 FIXTURE (Node from a checksummed tarball, repository over file://),
Debian 13 the v2 FIXTURE (distribution Node, pnpm with npm, repository over git daemon),
both on the stand-in rootless Podman of prepare.yml. Bad input, version bumps and the data
test are real ansible-playbook runs of the role (conftest.run_role).
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import (
    FIXTURE,
    HOME,
    PROJECT,
    USER,
    as_user,
    container_of,
    generation,
    image_name,
    main_pid,
    run_role,
    slug,
    state,
    status,
    unit_name,
)

# The scenario's .env input (vars/main.yml), as NanoClaw must read it back.
ASSISTANT = ' Andy "the" $HOME #1 '
EXPECTED_ENV = {
    "v1": {
        "ASSISTANT_NAME": ASSISTANT,
        "ANTHROPIC_API_KEY": "sk-ant-'single'\"double\"$PATH#hash  two  spaces",
        "ANTHROPIC_BASE_URL": "https://llm.example.invalid/v1",
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
        'Environment="MAX_CONCURRENT_CONTAINERS=2"',
        'Environment="CONTAINER_TIMEOUT=1800000"',
        'Environment="IDLE_TIMEOUT=1800000"',
        'Environment="NANOCLAW_NO_DIAGNOSTICS=1"',
        # 2 concurrent containers x 4096 MiB + 2048 MiB
        "MemoryMax=10240M",
        "WantedBy=default.target",
    ):
        assert line in text.splitlines(), f"{line!r} missing from the unit"
    assert f'Environment="PATH=/usr/local/libexec/nanoclaw-provision/{slug()}:' in text
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


def test_docker_wrapper_limits_and_hardens_only_the_agent_image(host):
    gen = _gen(host)
    wrapper = f"/usr/local/libexec/nanoclaw-provision/{slug()}/docker"
    image = image_name(gen)
    # A stand-in agent image (busybox) under the agent image's name; another image for contrast.
    for tag in (image, "localhost/not-the-agent:latest"):
        r = as_user(host, f"podman image exists {tag} || podman import -q /opt/standin/busybox-rootfs.tar {tag}")
        assert r.rc == 0, r.stderr
    as_user(host, "podman rm -f -t 0 nanoclaw-limits-agent nanoclaw-limits-other")
    agent = as_user(host, f"{wrapper} run -d --name nanoclaw-limits-agent {image} sleep 300")
    assert agent.rc == 0, agent.stderr
    other = as_user(host, f"{wrapper} run -d --name nanoclaw-limits-other localhost/not-the-agent:latest sleep 300")
    assert other.rc == 0, other.stderr
    try:
        a = json.loads(as_user(host, "podman inspect nanoclaw-limits-agent").stdout)[0]["HostConfig"]
        o = json.loads(as_user(host, "podman inspect nanoclaw-limits-other").stdout)[0]["HostConfig"]
        print(
            "agent HostConfig:",
            {k: a.get(k) for k in ("NanoCpus", "Memory", "PidsLimit", "ReadonlyRootfs", "Tmpfs", "CapDrop", "SecurityOpt")},
        )
        assert a["ReadonlyRootfs"] is True
        assert "/tmp" in (a.get("Tmpfs") or {})
        assert any("no-new-privileges" in opt for opt in a.get("SecurityOpt") or [])
        assert len(a.get("CapDrop") or []) > 0
        assert o["ReadonlyRootfs"] is False
        assert not any("no-new-privileges" in opt for opt in o.get("SecurityOpt") or [])
        # The limits reached the engine's configuration ...
        assert a["NanoCpus"] == 2_000_000_000
        assert a["Memory"] == 4096 * 1024 * 1024
        assert a["PidsLimit"] == 256
        assert o["Memory"] == 0
        # ... inside the container: read-only root, writable /tmp, no capabilities.
        ro = as_user(host, "podman exec nanoclaw-limits-agent sh -c 'touch /x' 2>&1")
        assert ro.rc != 0
        assert as_user(host, "podman exec nanoclaw-limits-agent sh -c 'touch /tmp/x'").rc == 0
        capeff = as_user(host, "podman exec nanoclaw-limits-agent cat /proc/self/status").stdout
        assert re.search(r"^CapEff:\s*0+$", capeff, re.M), capeff
    finally:
        as_user(host, "podman rm -f -t 0 nanoclaw-limits-agent nanoclaw-limits-other")


def test_cgroup_enforces_the_memory_limit(host):
    """Whether the kernel enforces --memory: rootless Podman on cgroup v1 cannot (reported, not faked)."""
    gen = _gen(host)
    wrapper = f"/usr/local/libexec/nanoclaw-provision/{slug()}/docker"
    cgroup2 = host.file("/sys/fs/cgroup/cgroup.controllers").exists
    as_user(host, "podman rm -f -t 0 nanoclaw-limits-cg")
    r = as_user(host, f"{wrapper} run -d --name nanoclaw-limits-cg {image_name(gen)} sleep 300")
    assert r.rc == 0, r.stderr
    try:
        pid = as_user(host, "podman inspect -f '{{.State.Pid}}' nanoclaw-limits-cg").stdout.strip()
        cgroups = host.file(f"/proc/{pid}/cgroup").content_string
        print(f"container pid {pid} cgroups:\n{cgroups}")
        if not cgroup2:
            pytest.skip(
                "host capability missing: cgroup v1 (hybrid) -- rootless Podman ignores --memory/--cpus/--pids-limit "
                f"here; the flags are in HostConfig (see the wrapper test), the kernel does not enforce them. cgroups: {cgroups!r}"
            )
        path = next(line.split(":", 2)[2] for line in cgroups.splitlines() if line.startswith("0::"))
        assert host.file(f"/sys/fs/cgroup{path}/memory.max").content_string.strip() == str(4096 * 1024 * 1024)
    finally:
        as_user(host, "podman rm -f -t 0 nanoclaw-limits-cg")


# ------------------------------------------------------------------ bad input
BAD_INPUTS = [
    ("non_sha_version", {"nanoclaw_version": "main"}, ["nanoclaw_version must be a full 40-character lowercase commit SHA", '"main"']),
    (
        "unknown_commit",
        {"nanoclaw_version": "0123456789abcdef0123456789abcdef01234567"},
        ["nanoclaw_version: 0123456789abcdef0123456789abcdef01234567 could not be checked out"],
    ),
    (
        "unreachable_repo",
        {"nanoclaw_repo_url": "git://127.0.0.1:9/nowhere.git", "nanoclaw_version": "0123456789abcdef0123456789abcdef01234567"},
        ["nanoclaw_repo_url: cannot reach git://127.0.0.1:9/nowhere.git"],
    ),
    (
        "allowlist_root_under_ssh",
        {"nanoclaw_mount_allowlist_roots": [{"path": "~/.ssh/work"}]},
        ["nanoclaw_mount_allowlist_roots: allowed_roots[0].path: '~/.ssh/work'", "blocked pattern '.ssh'"],
    ),
    (
        "allowlist_symlink_into_ssh",
        {"nanoclaw_mount_allowlist_roots": [{"path": "~/innocent"}]},
        ["nanoclaw_mount_allowlist_roots: allowed_roots[0].path: '~/innocent' (it resolves to '/home/nanoclaw/.ssh')", "'.ssh'"],
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
    (
        "secret_with_newline",
        {"nanoclaw_onecli_api_key": "SECRET-LINE-1\nSECRET-LINE-2", "nanoclaw_anthropic_api_key": "SECRET-LINE-1\nSECRET-LINE-2"},
        ["nanoclaw_anthropic_api_key", "a .env value cannot contain a newline"],
    ),
    (
        "memory_formula_exceeds_host",
        {"nanoclaw_max_concurrent_containers": 100000},
        ["memory formula exceeds the host: nanoclaw_max_concurrent_containers (100000) x nanoclaw_agent_memory_mib (4096)"],
    ),
    (
        "tarball_without_checksum",
        {"nanoclaw_node_install_method": "tarball", "nanoclaw_node_tarball_checksum": ""},
        ["nanoclaw_node_install_method=tarball needs"],
    ),
]


@pytest.fixture(scope="module")
def bad_input_log():
    records: list[str] = []
    yield records
    print("\n".join(["", "BAD INPUT EVIDENCE:", *records]))


@pytest.mark.parametrize(("name", "extra", "messages"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_fails_naming_the_variable_and_changes_nothing(host, name, extra, messages, bad_input_log):
    gen = _gen(host)
    # things the symlink/.ssh cases need: a real ~/.ssh and a symlink into it
    as_user(host, f"mkdir -p -m 700 {HOME}/.ssh && ln -sfn {HOME}/.ssh {HOME}/innocent")
    before = state(host, gen)
    result = run_role(container_of(host), extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    for message in messages:
        assert message in out, f"{message!r} not in output:\n{out[-4000:]}"
    assert "SECRET-LINE" not in out
    assert state(host, gen) == before
    line = next((ln.strip() for ln in out.splitlines() if any(m in ln for m in messages)), "")
    bad_input_log.append(f"[{container_of(host)}] {name}: {line[:400]}")


def test_dirty_checkout_fails_listing_files_and_changes_nothing(host):
    gen = _gen(host)
    before = state(host, gen)
    as_user(host, f"echo local-edit >> {PROJECT}/README.md")
    try:
        dirty_readme = host.check_output(f"sha256sum {PROJECT}/README.md")
        result = run_role(container_of(host), {"nanoclaw_version": FIXTURE[gen]["second"]})
        out = result.stdout + result.stderr
        assert result.returncode != 0
        assert f"the NanoClaw checkout {PROJECT} has 1 locally modified file(s): M README.md" in out, out[-3000:]
        assert "nanoclaw_force_checkout" in out
        assert host.check_output(f"sha256sum {PROJECT}/README.md") == dirty_readme
        assert state(host, gen) == before
    finally:
        as_user(host, f"git -C {PROJECT} checkout -- README.md")


def test_unmanaged_env_keys_are_preserved(host):
    gen = _gen(host)
    as_user(host, f"printf '# operator note\\nCUSTOM_KEY=\"keep me\"\\n' >> {PROJECT}/.env")
    result = run_role(container_of(host))
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"changed=0\s", result.stdout), result.stdout[-2000:]
    lines = host.file(f"{PROJECT}/.env").content_string.splitlines()
    assert "# operator note" in lines
    assert 'CUSTOM_KEY="keep me"' in lines
    assert [ln for ln in lines if not ln.startswith(("CUSTOM_", "#"))] == [f'{k}="{v}"' for k, v in EXPECTED_ENV[gen].items()]


# ------------------------------------------------------------------ data safety
DATA_FILES = [
    "groups/main/CLAUDE.md",
    "groups/family/notes.txt",
    "data/messages.db",
    "data/sessions/abc/session.json",
    "store/auth/creds.json",
    "logs/operator.log",
]


def _data_digest(host) -> str:
    return host.check_output(f"cd {PROJECT} && sha256sum {' '.join(DATA_FILES)} .env && stat -c '%n %s %Y' {' '.join(DATA_FILES)} .env")


def test_version_bump_keeps_data_byte_identical_and_activates_the_new_build(host):
    gen = _gen(host)
    as_user(
        host,
        f"cd {PROJECT} && mkdir -p groups/main groups/family data/sessions/abc store/auth logs && "
        "printf '# memory\\nremember the milk\\n' > groups/main/CLAUDE.md && echo family > groups/family/notes.txt && "
        "head -c 65536 /dev/urandom > data/messages.db && echo '{\"s\":1}' > data/sessions/abc/session.json && "
        "echo '{\"creds\":true}' > store/auth/creds.json && echo operator > logs/operator.log",
    )
    before = _data_digest(host)
    old_pid = main_pid(host, gen)
    result = run_role(container_of(host), {"nanoclaw_version": FIXTURE[gen]["second"]})
    assert result.returncode == 0, result.stdout[-4000:]
    after = _data_digest(host)
    print(f"DATA EVIDENCE [{container_of(host)}] before bump:\n{before}\nafter bump:\n{after}")
    assert after == before
    assert as_user(host, f"git -C {PROJECT} rev-parse HEAD").stdout.strip() == FIXTURE[gen]["second"]
    new_pid = main_pid(host, gen)
    assert new_pid not in (0, old_pid)
    current = _wait_for_status(host, new_pid)
    assert current["version"] == FIXTURE[gen]["versions"][1]
    print(f"NEW BUILD [{container_of(host)}]: pid {old_pid} -> {new_pid}, version {current['version']}")
    again = run_role(container_of(host), {"nanoclaw_version": FIXTURE[gen]["second"]})
    assert again.returncode == 0
    assert re.search(r"changed=0\s", again.stdout), again.stdout[-2000:]
    assert main_pid(host, gen) == new_pid


def test_failed_build_keeps_the_previous_build_running(host):
    gen = _gen(host)
    before = state(host, gen)
    data = _data_digest(host)
    result = run_role(container_of(host), {"nanoclaw_version": FIXTURE[gen]["broken"]})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'failed at "Run the build"' in out, out[-3000:]
    assert f"The previous build ({before['head']}) was left in place." in out
    assert state(host, gen) == before
    assert _data_digest(host) == data
    assert status(host)["version"] == FIXTURE[gen]["versions"][1]
    assert host.file(f"/proc/{before['pid']}").exists
