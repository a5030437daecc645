"""Verify nanoclaw.provision.docker on the molecule targets (Debian 12 and 13).

The NanoClaw user reaches the rootful engine through the docker group
(DOCKER_HOST=unix:///var/run/docker.sock) and its own rootless daemon through
the DOCKER_HOST its login shell gets; every check goes through `docker`.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

import pytest
from runtime_tests import (
    ARCHIVE,
    IMAGE,
    USER,
    as_user,
    assert_planted_symlinks_not_followed,
    cgroup_mode,
    play_fails_unchanged,
    target,
)

ROOTFUL = "DOCKER_HOST=unix:///var/run/docker.sock "
ENGINES = {"rootful": ROOTFUL, "rootless": ""}
HERE = Path(__file__).resolve().parent


def _fact(node) -> dict:
    return json.loads(node.file("/etc/ansible/facts.d/nanoclaw_docker.fact").content_string)


@pytest.fixture(scope="module")
def images(node):
    for prefix in ENGINES.values():
        if as_user(node, f"{prefix}docker image inspect {IMAGE} >/dev/null 2>&1").rc != 0:
            loaded = as_user(node, f"{prefix}docker load -i {ARCHIVE}")
            assert loaded.rc == 0, loaded.stderr
    return IMAGE


def test_user_is_in_the_docker_group(node):
    assert "docker" in node.user(USER).groups


@pytest.mark.parametrize("engine", ENGINES)
def test_docker_info_reports_the_engine(node, engine):
    out = as_user(node, ENGINES[engine] + "docker info --format '{{json .}}'")
    assert out.rc == 0, out.stderr
    info = json.loads(out.stdout)
    rootless = any("rootless" in o for o in info["SecurityOptions"])
    print(
        f"{engine}: server {info['ServerVersion']}, rootless={rootless}, cgroup {info.get('CgroupVersion')} "
        f"driver {info['CgroupDriver']}, storage {info['Driver']}"
    )
    assert rootless is (engine == "rootless")


@pytest.mark.parametrize("engine", ENGINES)
def test_docker_run_echo_ok_on_the_default_network(node, images, engine):
    out = as_user(node, f"{ENGINES[engine]}docker run --rm {images} echo ok")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "ok"
    net = as_user(node, f"{ENGINES[engine]}docker run --rm {images} cat /proc/net/route")
    interfaces = {line.split()[0] for line in net.stdout.splitlines()[1:] if line.strip()}
    print(f"{engine}: default network interfaces with routes {sorted(interfaces)}")
    assert interfaces - {"lo"}


@pytest.mark.parametrize("engine", ENGINES)
def test_bind_mount_written_in_the_container_is_owned_by_the_user(node, images, engine):
    user = node.user(USER)
    work = f"{user.home}/verify-bind-{engine}"
    as_user(node, f"rm -rf {work} && mkdir -p {work}")
    # NanoClaw passes --user UID:GID to the rootful engine (README of upstream);
    # the rootless engine maps container root to the user by itself.
    flag = f"--user {user.uid}:{user.gid} " if engine == "rootful" else ""
    out = as_user(node, f"{ENGINES[engine]}docker run --rm {flag}-v {work}:/work {images} sh -c 'echo hi > /work/w'")
    assert out.rc == 0, out.stderr
    written = node.file(f"{work}/w")
    print(f"{engine}: bind-mounted file owner {written.user}")
    assert written.user == USER


@pytest.mark.parametrize("engine", ENGINES)
def test_ps_filter_by_label_and_stop_with_timeout(node, images, engine):
    prefix, name = ENGINES[engine], f"nanoclaw-verify-{engine}"
    as_user(node, f"{prefix}docker rm -f {name} >/dev/null 2>&1")
    started = as_user(node, f"{prefix}docker run -d --name {name} --label nanoclaw-install=verify0001 {images} sleep 300")
    assert started.rc == 0, started.stderr
    try:
        listed = as_user(node, f"{prefix}docker ps --filter label=nanoclaw-install=verify0001 --format '{{{{.Names}}}}'")
        other = as_user(node, f"{prefix}docker ps --filter label=nanoclaw-install=another01 --format '{{{{.Names}}}}'")
        assert listed.stdout.split() == [name]
        assert other.stdout.strip() == ""
        t0 = time.monotonic()
        stopped = as_user(node, f"{prefix}docker stop -t 1 {name}")
        took = time.monotonic() - t0
        print(f"{engine}: docker stop -t 1 took {took:.1f} s")
        assert stopped.rc == 0, stopped.stderr
        assert took < 15
        after = as_user(node, f"{prefix}docker ps --filter label=nanoclaw-install=verify0001 --format '{{{{.Names}}}}'")
        assert after.stdout.strip() == ""
    finally:
        as_user(node, f"{prefix}docker rm -f {name} >/dev/null 2>&1")


@pytest.mark.parametrize("engine", ENGINES)
def test_socket_answers_the_docker_api(node, engine):
    script = "import docker; c = docker.from_env(); print(c.ping(), c.version()['ApiVersion'])"
    out = as_user(node, f'{ENGINES[engine]}python3 -c "{script}"')
    print(f"{engine}: Docker SDK ping: {out.stdout.strip()}")
    assert out.rc == 0, out.stderr
    assert out.stdout.startswith("True")


def test_rootless_daemon_runs_as_the_user_with_linger(node):
    uid = node.user(USER).uid
    assert node.check_output(f"loginctl show-user {USER} -p Linger") == "Linger=yes"
    env = as_user(node, "systemctl --user show-environment")
    assert f"DOCKER_HOST=unix:///run/user/{uid}/docker.sock" in env.stdout
    assert as_user(node, "systemctl --user is-active docker.service").stdout.strip() == "active"
    assert _fact(node)["docker_host"] == f"unix:///run/user/{uid}/docker.sock"
    # The role's result (nanoclaw_runtime_host, recorded in the local fact): NanoClaw would
    # use the rootless daemon, through Docker's own CLI.
    result = _fact(node)["runtime_host"]
    print(f"nanoclaw_runtime_host: {result}")
    assert result["docker_host"] == f"unix:///run/user/{uid}/docker.sock"
    assert (result["engine"], result["rootless"], result["docker_command"]) == ("docker", True, "/usr/bin/docker")
    assert node.file(result["docker_command"]).exists
    assert result["certs_dir"] == "/etc/docker/certs.d"
    assert (result["user"], str(result["uid"]), result["home"]) == (USER, str(uid), node.user(USER).home)
    assert result["cgroup_mode"] == cgroup_mode(node)
    assert result["limits_enforced"] is (result["cgroup_mode"] == "v2")


@pytest.mark.parametrize("path", ["/etc/subuid", "/etc/subgid"])
def test_subordinate_ids_present_and_not_overlapping(node, path):
    ranges = [(n, int(s), int(c)) for n, s, c in (ln.split(":") for ln in node.file(path).content_string.split())]
    assert next(r for r in ranges if r[0] == USER)[2] >= 65536
    for a, b in itertools.pairwise(sorted(ranges, key=lambda r: r[1])):
        assert a[1] + a[2] <= b[1]


@pytest.mark.parametrize("engine", ENGINES)
def test_memory_limit_by_cgroup_mode(node, images, engine):
    mode = cgroup_mode(node)
    out = as_user(node, f"{ENGINES[engine]}docker run --rm --memory 64m {images} cat /proc/self/cgroup")
    limit = as_user(
        node,
        f"{ENGINES[engine]}docker run --rm --memory 64m {images} sh -c "
        "'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes'",
    )
    print(f"{engine} on cgroup {mode}: run rc {out.rc}, limit seen inside {limit.stdout.strip()!r}, stderr {out.stderr.strip()!r}")
    if engine == "rootful":
        assert limit.stdout.strip() == str(64 * 1024 * 1024)
    elif mode != "v2":
        # Rootless Docker on cgroup v1 cannot apply the limit: it says so or refuses.
        assert limit.stdout.strip() != str(64 * 1024 * 1024)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_container_gets_no_new_privileges_from_the_daemon(node, images, engine):
    """daemon.json no-new-privileges: also for a container started with the real CLI, bypassing the nanoclaw wrapper."""
    out = as_user(node, f"{ENGINES[engine]}docker run --rm {images} cat /proc/self/status")
    assert out.rc == 0, out.stderr
    assert re.search(r"^NoNewPrivs:\s*1$", out.stdout, re.M), out.stdout


def test_default_ulimits_fit_the_hosts_hard_limit(node, images):
    hard = int(node.check_output("bash -c 'ulimit -Hn'"))
    out = as_user(node, f"{ROOTFUL}docker run --rm {images} sh -c 'ulimit -Hn'")
    assert out.rc == 0, out.stderr
    assert int(out.stdout) == min(hard, 65536)


# Bad input on the Debian 12 target: a clear failure, nothing changed.


def test_missing_user_with_creation_disabled_fails():
    play_fails_unchanged(
        HERE / "play_docker.yml",
        {"nanoclaw_docker_user": "ghost", "nanoclaw_docker_user_create": False},
        "the user 'ghost' (nanoclaw_docker_user) does not exist",
    )


def test_podman_role_on_a_docker_host_is_refused():
    play_fails_unchanged(HERE / "play_podman.yml", {}, "a Docker engine is installed (docker.io)", "nanoclaw_podman_docker_engine_policy")


def test_other_runtime_requested_fails():
    play_fails_unchanged(
        HERE / "play_docker.yml",
        {"nanoclaw_runtime": "podman"},
        "nanoclaw_runtime is 'podman', but the docker role was applied",
    )


def test_upstream_without_url_and_unsupported_distribution_fail_together():
    play_fails_unchanged(
        HERE / "play_docker.yml",
        {"nanoclaw_docker_source": "upstream", "nanoclaw_docker_supported_distributions": {"Ubuntu": ["24.04"]}},
        "nanoclaw_docker_upstream_url is empty",
        "unsupported distribution: this host runs Debian 12",
    )


def test_planted_symlinks_in_the_users_home_are_not_followed():
    found = target("debian12")
    out = assert_planted_symlinks_not_followed(
        found[0],
        found[1],
        HERE / "play_docker.yml",
        [".config/environment.d", ".config/docker", ".config/systemd/user"],
        {"nanoclaw_docker_rootless": True},
    )
    print(out[-1500:])
