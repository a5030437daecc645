"""Verify nanoclaw.provision.podman on the molecule targets (Debian 12 and 13).

Everything NanoClaw does goes through the `docker` command as the NanoClaw user,
so the checks do too; each prints what it saw (pytest -v -s shows it).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

import pytest
from runtime_tests import (
    USER,
    as_user,
    assert_planted_symlinks_not_followed,
    cgroup_mode,
    local_fact,
    play_fails_unchanged,
    run_play,
    target,
)

HERE = Path(__file__).resolve().parent
PLAY = HERE / "play_podman.yml"
INSTALL_PLAY = HERE / "play_podman_install.yml"


def _uid(node) -> int:
    return node.user(USER).uid


def test_docker_info_reports_rootless_podman(node):
    out = as_user(node, "docker info --format json")
    assert out.rc == 0, out.stderr
    info = json.loads(out.stdout)
    print(
        f"docker info: rootless={info['host']['security']['rootless']} "
        f"podman={info['version']['Version']} runtime={info['host']['ociRuntime']['name']} "
        f"cgroup={info['host']['cgroupVersion']} storage={info['store']['graphDriverName']}"
    )
    assert info["host"]["security"]["rootless"] is True
    assert info["version"]["Version"]
    # The role's choices are the ones in effect.
    fact = local_fact(node)
    assert info["host"]["ociRuntime"]["name"] == fact["rootless_runtime"] == "crun"
    assert info["store"]["graphDriverName"] == ("vfs" if fact["storage_driver"] == "vfs" else "overlay")
    # docker is the podman shim, not another engine.
    assert "podman" in node.file(node.check_output("readlink -f $(command -v docker)")).content_string
    # The role's result (nanoclaw_runtime_host, recorded in the local fact) names that shim.
    result = fact["runtime_host"]
    print(f"nanoclaw_runtime_host: {result}")
    assert result["engine"] == "podman"
    assert result["rootless"] is True
    assert "podman" in node.file(node.check_output(f"readlink -f {result['docker_command']}")).content_string
    assert result["certs_dir"] == "/etc/containers/certs.d"
    assert (result["user"], str(result["uid"]), result["home"]) == (USER, str(_uid(node)), node.user(USER).home)


def test_docker_run_echo_ok_on_the_default_network(node, smoke_image):
    out = as_user(node, f"docker run --rm {smoke_image} echo ok")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert "Emulate Docker CLI" not in out.stderr
    # The default network is a real one (slirp4netns tap0 or pasta's copy of the
    # node's interface), not --network none: the container has a non-loopback
    # interface with an address.
    net = as_user(node, f"docker run --rm {smoke_image} cat /proc/net/route")
    assert net.rc == 0, net.stderr
    interfaces = {line.split()[0] for line in net.stdout.splitlines()[1:] if line.strip()}
    print(f"default network: interfaces with routes {sorted(interfaces)}")
    assert interfaces - {"lo"}, net.stdout


def test_bind_mount_written_in_the_container_is_owned_by_the_user(node, smoke_image):
    home = node.user(USER).home
    work = f"{home}/verify-bind"
    as_user(node, f"rm -rf {work} && mkdir -p {work}")
    out = as_user(node, f"docker run --rm -v {work}:/work {smoke_image} sh -c 'echo hello > /work/written && id -u'")
    assert out.rc == 0, out.stderr
    written = node.file(f"{work}/written")
    print(f"bind mount: container uid {out.stdout.strip()}, host file owner {written.user} ({written.uid})")
    assert written.exists
    assert written.user == USER
    assert written.content_string == "hello\n"


def test_ps_filter_by_label_and_stop_with_timeout(node, smoke_image):
    name = "nanoclaw-verify-stop"
    as_user(node, f"docker rm -f {name} >/dev/null 2>&1")
    started = as_user(node, f"docker run -d --name {name} --label nanoclaw-install=verify0001 {smoke_image} sleep 300")
    assert started.rc == 0, started.stderr
    try:
        listed = as_user(node, "docker ps --filter label=nanoclaw-install=verify0001 --format '{{.Names}}'")
        other = as_user(node, "docker ps --filter label=nanoclaw-install=another01 --format '{{.Names}}'")
        assert listed.stdout.split() == [name]
        assert other.rc == 0
        assert other.stdout.strip() == ""
        t0 = time.monotonic()
        stopped = as_user(node, f"docker stop -t 1 {name}")
        took = time.monotonic() - t0
        print(f"docker stop -t 1: rc {stopped.rc} after {took:.1f} s")
        assert stopped.rc == 0, stopped.stderr
        assert took < 15
        after = as_user(node, "docker ps --filter label=nanoclaw-install=verify0001 --format '{{.Names}}'")
        assert after.stdout.strip() == ""
    finally:
        as_user(node, f"docker rm -f {name} >/dev/null 2>&1")


def test_socket_answers_the_docker_api(node):
    uid = _uid(node)
    env = as_user(node, "systemctl --user show-environment")
    assert f"DOCKER_HOST=unix:///run/user/{uid}/podman/podman.sock" in env.stdout, env.stdout + env.stderr
    assert local_fact(node)["runtime_host"]["docker_host"] == f"unix:///run/user/{uid}/podman/podman.sock"
    assert as_user(node, "systemctl --user is-enabled podman.socket").stdout.strip() == "enabled"
    script = (
        "import os, docker; c = docker.DockerClient(base_url=os.environ['DOCKER_HOST']); "
        "v = c.version(); print(c.ping(), [x['Name'] for x in v.get('Components', [])])"
    )
    out = as_user(node, f'python3 -c "{script}"')
    print(f"Docker SDK over $DOCKER_HOST: {out.stdout.strip()}")
    assert out.rc == 0, out.stderr
    assert out.stdout.startswith("True")
    assert "Podman Engine" in out.stdout


def test_linger_is_on(node):
    assert node.file(f"/var/lib/systemd/linger/{USER}").exists
    assert node.check_output(f"loginctl show-user {USER} -p Linger") == "Linger=yes"


@pytest.mark.parametrize("path", ["/etc/subuid", "/etc/subgid"])
def test_subordinate_ids_present_and_not_overlapping(node, path):
    entries = [line.split(":") for line in node.file(path).content_string.splitlines() if line.strip()]
    ranges = [(name, int(start), int(count)) for name, start, count in entries]
    own = [r for r in ranges if r[0] in (USER, str(_uid(node)))]
    print(f"{path}: {ranges}")
    assert len(own) == 1
    assert own[0][2] >= 65536
    ordered = sorted(ranges, key=lambda r: r[1])
    for a, b in itertools.pairwise(ordered):
        assert a[1] + a[2] <= b[1], f"{a} overlaps {b}"
    # Podman really maps the range: uid 1 in a container is the range start on the node.
    mapping = as_user(node, "podman unshare cat /proc/self/uid_map")
    assert str(own[0][1]) in mapping.stdout or path.endswith("subgid")


def test_default_ulimits_fit_the_hosts_hard_limit(node, smoke_image):
    hard = int(node.check_output("bash -c 'ulimit -Hn'"))
    out = as_user(node, f"docker run --rm {smoke_image} sh -c 'ulimit -Hn'")
    assert out.rc == 0, out.stderr
    print(f"nofile in a container: {out.stdout.strip()} (node hard limit {hard})")
    assert int(out.stdout) == min(hard, 65536)


def test_resource_limits_match_the_cgroup_mode(node, smoke_image):
    mode = cgroup_mode(node)
    fact = local_fact(node)
    assert fact["cgroup_mode"] == fact["runtime_host"]["cgroup_mode"] == mode
    assert fact["runtime_host"]["limits_enforced"] is fact["resource_limits_enforced"]
    out = as_user(node, f"docker run --rm --memory 64m {smoke_image} cat /proc/self/cgroup")
    assert out.rc == 0, out.stderr
    if mode == "v2":
        assert fact["resource_limits_enforced"] is True
        limit = as_user(node, f"docker run --rm --memory 64m {smoke_image} cat /sys/fs/cgroup/memory.max")
        print(f"cgroup {mode}: memory.max in a --memory 64m container = {limit.stdout.strip()}")
        assert limit.stdout.strip() == str(64 * 1024 * 1024)
    else:
        # Podman says so itself, and the role reported it instead of failing.
        print(f"cgroup {mode}: --memory 64m gave: {out.stderr.strip()!r}")
        assert fact["resource_limits_enforced"] is False
        assert "Resource limits are not supported and ignored on cgroups V1 rootless systems" in out.stderr


def test_user_services_see_docker_host_and_no_bus_errors(node):
    out = as_user(node, "systemctl --user is-system-running || true")
    assert "Failed to connect to bus" not in out.stderr
    assert out.stdout.strip() in ("running", "degraded")


# Bad input: each drives the role through a real ansible-playbook run on the
# Debian 12 target, expects a clear failure naming the variable or node fact,
# and a target whose accounts and configuration are byte-for-byte unchanged.


def _fails_unchanged(extra_vars: dict, *expected: str) -> str:
    out = play_fails_unchanged(PLAY, extra_vars, *expected)
    assert "nothing was changed" in out or "Validating arguments against arg spec" in out
    return out


def test_missing_user_with_creation_disabled_fails():
    _fails_unchanged(
        {"nanoclaw_podman_user": "ghost", "nanoclaw_podman_user_create": False},
        "the user 'ghost' (nanoclaw_podman_user) does not exist and",
        "nanoclaw_podman_user_create is false",
    )


def test_subuid_range_overlapping_another_user_fails():
    node = target("debian12")[1]
    start = next(int(line.split(":")[1]) for line in node.file("/etc/subuid").content_string.splitlines() if line.startswith(f"{USER}:"))
    _fails_unchanged(
        {"nanoclaw_podman_user": "second", "nanoclaw_podman_subuid_start": start + 100},
        f"nanoclaw_podman_subuid_start={start + 100} gives second the subuid range",
        f"which overlaps {USER} ({start}-",
    )


def test_both_runtimes_requested_fails():
    _fails_unchanged(
        {"nanoclaw_runtime": "docker"},
        "nanoclaw_runtime is 'docker', but the podman role was applied",
    )


def test_unsupported_distribution_fails():
    _fails_unchanged(
        {"nanoclaw_podman_supported_distributions": {"Ubuntu": ["24.04"]}},
        "unsupported distribution: this host runs Debian 12 (ansible_facts.distribution)",
        "nanoclaw_podman_supported_distributions",
    )


def test_wsl2_without_systemd_fails():
    """A WSL2 kernel string is bind-mounted over /proc/version; /etc/wsl.conf has no systemd=true."""
    node = target("debian12")[1]
    fake = "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@wsl) (gcc) #1 SMP\n"
    node.run(f"printf %s {json.dumps(fake)} > /run/fake-proc-version && mount --bind /run/fake-proc-version /proc/version")
    try:
        assert "microsoft-standard-WSL2" in node.check_output("cat /proc/version")
        _fails_unchanged({}, "WSL2 without systemd (/etc/wsl.conf has no [boot] systemd=true)", "wsl.exe --shutdown")
    finally:
        node.run("umount /proc/version; rm -f /run/fake-proc-version")
    assert "microsoft" not in node.check_output("cat /proc/version")


def test_unusable_tun_device_fails_naming_the_fact():
    node = target("debian12")[1]
    node.run("chmod 0600 /dev/net/tun")
    try:
        _fails_unchanged({}, "/dev/net/tun is not usable by unprivileged users (mode 0600)", "nanoclaw_podman_require_tun")
    finally:
        node.run("chmod 0666 /dev/net/tun")


def test_required_limits_on_cgroup_v1_fail():
    node = target("debian12")[1]
    if cgroup_mode(node) == "v2":
        pytest.skip("the target runs cgroup v2: limits are enforceable, nothing to refuse")
    _fails_unchanged(
        {"nanoclaw_podman_require_resource_limits": True},
        "per-container limits cannot be enforced for rootless containers here (cgroup",
        "nanoclaw_podman_require_resource_limits is true",
    )


def test_wrong_argument_type_is_rejected_by_the_argument_spec():
    out = _fails_unchanged({"nanoclaw_podman_subid_mode": "guess"}, "nanoclaw_podman_subid_mode")
    assert re.search(r"value of nanoclaw_podman_subid_mode must be one of: allocate, verify", out)


def test_planted_symlinks_in_the_users_home_are_not_followed():
    found = target("debian12")
    out = assert_planted_symlinks_not_followed(
        found[0], found[1], PLAY, [".config/environment.d", ".config/containers/containers.conf.d"], {}
    )
    print(out[-1500:])


# Last, as it purges and reinstalls one of the role's packages on the Debian 13 target.
def test_install_updates_apt_lists_emptied_just_now():
    """A just-built image has an empty /var/lib/apt/lists whose mtime is fresh: apt's
    cache_valid_time then skipped the update and the install failed with "No package matching"
    (`./run site` on a fresh machine). Lists emptied just now and one of the role's packages
    purged, the role's install steps must update the lists and install it; a second run, with
    every package installed, must not run apt at all."""
    found = target("debian13")
    name, node = found[0], found[1]
    purge = node.run("apt-get purge -y -q catatonit")
    assert purge.rc == 0, purge.stderr
    node.run("rm -rf /var/lib/apt/lists/* /var/lib/apt/periodic/update-success-stamp && mkdir -p /var/lib/apt/lists/partial")
    assert node.run("ls /var/lib/apt/lists/*_Packages*").rc != 0
    assert not node.package("catatonit").is_installed
    assert time.time() - node.file("/var/lib/apt/lists").mtime.timestamp() < 120

    first = run_play(name, INSTALL_PLAY, {})
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-3000:]
    assert "apt cache_updated=True skipped=False" in out, out[-3000:]
    assert node.package("catatonit").is_installed
    assert node.run("ls /var/lib/apt/lists/*_Packages*").rc == 0

    second = run_play(name, INSTALL_PLAY, {})
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    # Every package installed: neither the apt probe nor apt runs again.
    assert "apt cache_updated=False skipped=True" in out, out[-3000:]
