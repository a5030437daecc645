"""nanoclaw.provision.runtime_compat for real: rootful Docker and rootless Podman (through a docker wrapper).

The outcomes asserted here are the ones that truly differ by engine on this host (cgroup v1):
rootful Docker enforces --memory/--cpus/--pids-limit and keeps host uids on bind mounts; rootless
Podman 4.3 ignores the limits (reported as not enforced, read from the container's own cgroup
files), maps --user uids to subordinate ids, supports --userns=keep-id, needs /dev/net/tun, and
rejects the host-gateway value NanoClaw passes.
"""

from __future__ import annotations

import json
import pwd
import resource
from pathlib import Path

import pytest
from conftest import AGENT, DOCKER, PODMAN, by_name, device_mode, host_cgroup_version, record, table

from tests.harness.module_play import run_module

IMAGE = f"{AGENT}:ok"
COMMON = {"info", "run_rm_name", "bind_mount", "bind_mount_ro", "env", "user_home", "add_host_gateway"}
V1_PATTERNS = COMMON | {"run_stdin", "ps_filter_name", "mount_dev_null_file", "mount_nested_rw"}
V2_PATTERNS = COMMON | {"ps_filter_label", "entrypoint", "entrypoint_exec_bun", "mount_file_ro", "build_file"}
PATTERNS = V1_PATTERNS | V2_PATTERNS | {"stop", "build"}
ENVIRONMENT = {
    "memory_limit",
    "cpu_limit",
    "pids_limit",
    "hardening_flags",
    "userns_keep_id",
    "bind_mount_ownership",
    "dev_net_tun",
    "dev_fuse",
    "subuid_subgid",
    "docker_host",
    "rlimits",
    "build_buildkit",
}

pytestmark = pytest.mark.usefixtures("engines_ready")


def assert_common(result: dict) -> None:
    """What holds for every engine: records well-formed, never changed, required = the generation's patterns."""
    assert result["changed"] is False
    checks = by_name(result)
    assert set(checks) == PATTERNS | ENVIRONMENT
    for check in result["checks"]:
        assert set(check) == {"name", "required", "passed", "seconds", "detail"}
        assert check["seconds"] >= 0
        assert check["detail"]
        assert check["required"] == (check["name"] in PATTERNS), check["name"]
    assert result["summary"]["total"] == len(result["checks"])
    assert result["summary"]["failed"] == [c["name"] for c in result["checks"] if not c["passed"]]


def test_rootful_docker_passes_and_enforces_limits(tmp_path):
    play = run_module(tmp_path, "runtime_compat", [{"image": IMAGE, "generation": "both"}])
    result = play.result
    record("runtime_compat-docker.md", table(result) + "\n\n" + json.dumps(result["engine"]) + "\n")
    assert not result.get("failed"), result["msg"]
    assert_common(result)
    checks = by_name(result)
    assert result["engine"]["name"] == "docker"
    assert result["engine"]["rootless"] is False
    assert result["engine"]["cgroup_version"] == host_cgroup_version()
    assert all(checks[name]["passed"] for name in PATTERNS), [c for c in result["checks"] if not c["passed"]]
    # Rootful Docker enforces the limits: the container's own cgroup files carry them.
    assert result["limits"] == {"memory": str(256 * 1024 * 1024), "cpus": "0.5", "pids": "64"}
    for name in ("memory_limit", "cpu_limit", "pids_limit", "hardening_flags", "bind_mount_ownership", "rlimits", "docker_host"):
        assert checks[name]["passed"], checks[name]
    assert "host.docker.internal resolves to" in checks["add_host_gateway"]["detail"]
    # The real hosts' mount patterns: /dev/null over .env, store/ read-write under the read-only project,
    # container.json as a read-only single file, `bash -c 'exec bun ...'` as PID 1, build -f.
    assert "the agent reads nothing and cannot change the host's file" in checks["mount_dev_null_file"]["detail"]
    assert "the project itself stays read-only" in checks["mount_nested_rw"]["detail"]
    assert "container.json read-only as a single file" in checks["mount_file_ro"]["detail"]
    assert "hands PID 1 to the program; bun is /usr/local/bin/bun" in checks["entrypoint_exec_bun"]["detail"]
    assert "with -f" in checks["build_file"]["detail"]
    # Docker has no keep-id: reported, not required, not failing the module. BuildKit: whether this
    # machine's docker CLI builds `RUN --mount` depends on its buildx plugin; informational either way.
    assert checks["userns_keep_id"]["passed"] is False
    buildkit = checks["build_buildkit"]
    assert buildkit["required"] is False
    if not buildkit["passed"]:
        assert "classic builder" in buildkit["detail"] or "buildx" in buildkit["detail"], buildkit["detail"]
    assert sorted(result["summary"]["failed"]) == sorted(["userns_keep_id"] + ([] if buildkit["passed"] else ["build_buildkit"]))
    # Nothing left behind.
    assert DOCKER.names("name=nanoclaw-compat-") == []
    assert "nanoclaw-compat-" not in DOCKER.cli("images", "--format", "{{.Repository}}").stdout


def test_check_mode_runs_the_same_checks_and_leaves_nothing(tmp_path):
    play = run_module(tmp_path, "runtime_compat", [{"image": IMAGE, "generation": "v1"}], check=True)
    result = play.result
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False
    names = [c["name"] for c in result["checks"]]
    assert "run_stdin" in names
    assert "entrypoint" not in names
    assert "ps_filter_label" not in names
    assert by_name(result)["memory_limit"]["passed"]
    assert DOCKER.names("name=nanoclaw-compat-") == []


def test_a_failing_check_fails_the_module_only_when_required(tmp_path):
    play = run_module(
        tmp_path,
        "runtime_compat",
        [
            {"image": IMAGE, "generation": "v1", "required": ["info", "userns_keep_id"]},
            {"image": "localhost/nanoclaw-fixture-agent:does-not-exist", "generation": "v1", "required": []},
            {"image": IMAGE, "generation": "v1", "environment": {"DOCKER_HOST": "unix:///run/nanoclaw-no-such.sock"}},
        ],
    )
    keep_id, missing_image, no_socket = play.results
    assert keep_id["failed"] is True
    assert keep_id["msg"].startswith("required checks failed: userns_keep_id:")
    assert keep_id["summary"]["required_failed"] == ["userns_keep_id"]
    # Nothing required: every probe fails on a missing image, and the module still succeeds.
    assert not missing_image.get("failed"), missing_image["msg"]
    assert by_name(missing_image)["run_rm_name"]["passed"] is False
    assert missing_image["summary"]["required_failed"] == []
    # An unreachable engine: info fails, the socket check says why, every pattern is reported as not run.
    assert no_socket["failed"] is True
    checks = by_name(no_socket)
    assert checks["info"]["passed"] is False
    assert "NanoClaw exits at start" in checks["info"]["detail"]
    assert checks["docker_host"]["passed"] is False
    assert "/run/nanoclaw-no-such.sock is not a socket" in checks["docker_host"]["detail"]
    assert checks["run_stdin"]["detail"] == "not run: `info` failed"
    assert set(no_socket["summary"]["required_failed"]) == V1_PATTERNS | {"stop", "build"}


def test_a_rerun_reuses_the_recorded_checks_until_what_they_depend_on_changes(tmp_path):
    state = tmp_path / "state"
    record_file = state / "runtime_compat.json"
    base = {"image": IMAGE, "generation": "v1", "record": str(record_file)}
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    linked = {**base, "record": str(tmp_path / "link" / "runtime_compat.json")}
    play = run_module(
        tmp_path, "runtime_compat", [base, base, {**base, "limits": {"memory": 128}}, {**base, "reuse_max_age": 0}, linked, linked]
    )
    first, again, other_limits, no_reuse, link_first, link_again = play.results
    for result in play.results:
        assert not result.get("failed"), result["msg"]
        assert result["changed"] is False
        assert {c["name"] for c in result["checks"]} >= V1_PATTERNS
    # The first run checks everything and keeps its result owner-only.
    assert first["reused"] is False
    assert (record_file.stat().st_mode & 0o777, state.stat().st_mode & 0o777) == (0o600, 0o700)
    # The same run again: info only, the rest is the record's (the same seconds, to the millisecond).
    assert again["reused"] is True
    assert "reused from the full run of " + first["checked_at"] in again["msg"]
    assert again["checked_at"] == first["checked_at"]
    assert again["limits"] == first["limits"]
    recorded = [(c["name"], c["passed"], c["seconds"], c["detail"]) for c in first["checks"] if c["name"] != "info"]
    assert [(c["name"], c["passed"], c["seconds"], c["detail"]) for c in again["checks"] if c["name"] != "info"] == recorded
    assert again["checks"][0]["name"] == "info"
    # Other options are another fingerprint; reuse_max_age 0 never reuses.
    assert other_limits["reused"] is False
    assert other_limits["limits"]["memory"] == str(128 * 1024 * 1024)
    assert no_reuse["reused"] is False
    # A record directory that is a symlink is neither read nor written: a warning, every check runs.
    assert (link_first["reused"], link_again["reused"]) == (False, False)
    assert any("could not record" in w and "symlink" in w for w in link_again.get("warnings", []))
    assert list((tmp_path / "real").iterdir()) == []
    assert DOCKER.names("name=nanoclaw-compat-") == []


def test_check_mode_reuses_a_record_but_never_writes_one(tmp_path):
    record_file = tmp_path / "state" / "runtime_compat.json"
    call = {"image": IMAGE, "generation": "v1", "record": str(record_file)}
    checked = run_module(tmp_path, "runtime_compat", [call], check=True).result
    assert not checked.get("failed"), checked["msg"]
    assert checked["reused"] is False
    assert not record_file.exists()
    real = run_module(tmp_path, "runtime_compat", [call], check=False).result
    assert real["reused"] is False
    assert record_file.exists()
    checked_again = run_module(tmp_path, "runtime_compat", [call], check=True).result
    assert checked_again["reused"] is True
    assert checked_again["checked_at"] == real["checked_at"]


@pytest.mark.usefixtures("tun_usable")
def test_rootless_podman_reports_what_it_does_not_do(tmp_path):
    play = run_module(tmp_path, "runtime_compat", [PODMAN.module_args(image=IMAGE, generation="both")])
    result = play.result
    record("runtime_compat-podman.md", table(result) + "\n\n" + json.dumps(result["engine"]) + "\n")
    assert_common(result)
    checks = by_name(result)
    engine = result["engine"]
    assert (engine["name"], engine["rootless"]) == ("podman", True)
    assert engine["executable"].endswith("/.local/bin/docker"), "the module must use the user's docker wrapper"
    # Podman 4.3 rejects host-gateway: the only required failure, so the module fails naming it.
    assert result["failed"] is True
    assert result["summary"]["required_failed"] == ["add_host_gateway"]
    assert "host-gateway" in checks["add_host_gateway"]["detail"]
    assert "upgrade" in checks["add_host_gateway"]["detail"]
    if host_cgroup_version() == "1":
        # Rootless on cgroup v1: the limits are NOT enforced, and the report says so and what to do.
        assert result["limits"] == {"memory": "unlimited", "cpus": "unlimited", "pids": "unlimited"}
        for name in ("memory_limit", "cpu_limit", "pids_limit"):
            assert checks[name]["passed"] is False
            assert "NOT enforced" in checks[name]["detail"]
            assert "cgroup v2" in checks[name]["detail"]
    assert checks["userns_keep_id"]["passed"] is True
    # --user UID:GID lands on a subordinate uid on the host; keep-id is the fix the detail names.
    assert checks["bind_mount_ownership"]["passed"] is False
    assert "keep-id" in checks["bind_mount_ownership"]["detail"]
    assert checks["dev_net_tun"]["passed"] is True
    assert checks["subuid_subgid"]["passed"] is True
    assert checks["hardening_flags"]["passed"] is True
    # Buildah builds RUN --mount=type=cache (no BuildKit needed); the mount patterns hold rootless too.
    assert checks["build_buildkit"]["passed"] is True, checks["build_buildkit"]["detail"]
    for name in ("mount_dev_null_file", "mount_nested_rw", "mount_file_ro", "entrypoint_exec_bun", "build_file"):
        assert checks[name]["passed"] is True, checks[name]
    assert PODMAN.names("name=nanoclaw-compat-") == []


@pytest.mark.usefixtures("tun_usable")
def test_rootless_podman_passes_when_host_gateway_is_not_required(tmp_path):
    required = sorted(V1_PATTERNS - {"add_host_gateway"} | {"stop", "build"})
    play = run_module(tmp_path, "runtime_compat", [PODMAN.module_args(image=IMAGE, generation="v1", required=required)])
    result = play.result
    assert not result.get("failed"), result["msg"]
    assert result["summary"]["ok"] is True
    assert "add_host_gateway" in result["summary"]["failed"]
    assert by_name(result)["add_host_gateway"]["required"] is False


def test_rootless_podman_reports_an_rlimit_above_the_hard_limit(tmp_path):
    """Podman's default nofile above the host's hard limit: `setrlimit ... Operation not permitted`, reported with the fix."""
    conf = Path(pwd.getpwnam(PODMAN.user).pw_dir) / ".config" / "containers" / "containers.conf"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("this host has no hard nofile limit to exceed")
    conf.write_text(f'[containers]\ndefault_ulimits = ["nofile={hard + 1}:{hard + 1}"]\n')
    try:
        with device_mode("/dev/net/tun", 0o666):
            play = run_module(tmp_path, "runtime_compat", [PODMAN.module_args(image=IMAGE, generation="v1", required=[])])
    finally:
        conf.unlink()
    result = play.result
    checks = by_name(result)
    assert not result.get("failed"), result["msg"]
    assert checks["rlimits"]["passed"] is False
    assert "rlimit" in checks["rlimits"]["detail"]
    assert "not permitted" in checks["rlimits"]["detail"]
    assert "default_ulimits" in checks["rlimits"]["detail"]
    assert checks["run_rm_name"]["passed"] is False
    assert "see the rlimits check" in checks["run_rm_name"]["detail"]


def test_rootless_podman_with_tun_0600_reports_the_device_and_the_fix(tmp_path):
    with device_mode("/dev/net/tun", 0o600):
        play = run_module(tmp_path, "runtime_compat", [PODMAN.module_args(image=IMAGE, generation="v1")])
    result = play.result
    record("runtime_compat-podman-tun0600.md", table(result) + "\n")
    checks = by_name(result)
    assert result["failed"] is True
    tun = checks["dev_net_tun"]
    assert tun["passed"] is False
    assert "mode 0600" in tun["detail"]
    assert "chmod 0666 /dev/net/tun" in tun["detail"]
    # The container runs fail, and their details point at the device.
    assert checks["run_rm_name"]["passed"] is False
    assert "dev_net_tun" in checks["run_rm_name"]["detail"]
    assert "run_rm_name" in result["summary"]["required_failed"]
