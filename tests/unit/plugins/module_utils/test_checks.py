"""Pure parsers of the check records and engine facts."""

from __future__ import annotations

import json

import pytest

from ansible_collections.nanoclaw.provision.plugins.module_utils._checks import (
    UNLIMITED,
    Check,
    CheckList,
    effective_limits,
    engine_from_version_text,
    format_table,
    parse_info,
    parse_key_values,
    stable_info,
    summarize,
)


def test_a_failing_optional_check_does_not_fail_the_summary():
    checks = CheckList(required=["info"])
    checks.run("info", lambda: (True, "ok"))
    checks.run("memory_limit", lambda: (False, "not enforced"))
    summary = checks.summary()
    assert summary["ok"] is True
    assert summary["failed"] == ["memory_limit"]
    assert summary["required_failed"] == []
    assert [c.required for c in checks.checks] == [True, False]


def test_a_failing_required_check_fails_the_summary():
    checks = CheckList(required=["bind_mount_ro"])
    checks.run("bind_mount_ro", lambda: (False, "writable"))
    assert summarize(checks.checks)["required_failed"] == ["bind_mount_ro"]
    assert summarize(checks.checks)["ok"] is False


def test_a_crashing_probe_is_a_failed_check_with_its_error():
    def probe():
        raise RuntimeError("boom")

    check = CheckList(required=[]).run("x", probe)
    assert check.passed is False
    assert "RuntimeError: boom" in check.detail


def test_skipped_checks_fail_and_say_why():
    check = CheckList(required=["env"]).skip("env", "`info` failed")
    assert (check.passed, check.required, check.detail) == (False, True, "not run: `info` failed")


def test_table_has_a_row_per_check():
    checks = CheckList(required=["a"])
    checks.run("a", lambda: (True, "fine"))
    checks.run("bb", lambda: (False, "bad"))
    lines = format_table(checks.checks).splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("bb ")
    assert lines[2].endswith("bad")


@pytest.mark.parametrize(
    ("text", "engine"),
    [("podman version 4.3.1", "podman"), ("Docker version 28.2.2, build e6534b4", "docker"), ("nerdctl 1.0", "unknown")],
)
def test_engine_from_version_text(text, engine):
    assert engine_from_version_text(text) == engine


def test_parse_docker_info():
    facts = parse_info(
        "docker",
        json.dumps(
            {
                "ServerVersion": "20.10.24+dfsg1",
                "CgroupVersion": "1",
                "CgroupDriver": "cgroupfs",
                "Driver": "overlay2",
                "SecurityOptions": ["name=seccomp,profile=default"],
            }
        ),
    )
    assert (facts.name, facts.version, facts.rootless, facts.cgroup_version, facts.storage_driver) == (
        "docker",
        "20.10.24+dfsg1",
        False,
        "1",
        "overlay2",
    )
    rootless = parse_info("docker", json.dumps({"SecurityOptions": ["name=seccomp", "name=rootless"], "CgroupVersion": "2"}))
    assert rootless.rootless is True


def test_parse_podman_info():
    facts = parse_info(
        "podman",
        json.dumps(
            {
                "host": {"security": {"rootless": True}, "cgroupVersion": "v1", "cgroupManager": "cgroupfs"},
                "version": {"Version": "4.3.1"},
                "store": {
                    "graphDriverName": "overlay",
                    "graphOptions": {"overlay.mount_program": {"Executable": "/usr/bin/fuse-overlayfs"}},
                },
            }
        ),
    )
    assert (facts.name, facts.version, facts.rootless, facts.cgroup_version) == ("podman", "4.3.1", True, "1")
    assert "fuse-overlayfs" in facts.storage_options


def test_key_values_ignore_other_lines():
    assert parse_key_values("a=1\nnoise\n b = 2 \n=x\nc=d=e") == {"a": "1", "b": "2", "c": "d=e"}


def test_cgroup_v1_limits_enforced():
    limits = effective_limits(
        {"memory.limit_in_bytes": "268435456", "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000", "pids.max": "64"}
    )
    assert limits == {"memory": "268435456", "cpus": "0.5", "pids": "64"}


def test_cgroup_v1_limits_ignored_as_rootless_podman_shows_them():
    # What rootless Podman on cgroup v1 shows: the host's unlimited values, no pids.max.
    limits = effective_limits({"memory.limit_in_bytes": "9223372036854771712", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000"})
    assert limits == {"memory": UNLIMITED, "cpus": UNLIMITED, "pids": UNLIMITED}


def test_cgroup_v2_limits():
    assert effective_limits({"memory.max": "268435456", "cpu.max": "50000 100000", "pids.max": "64"}) == {
        "memory": "268435456",
        "cpus": "0.5",
        "pids": "64",
    }
    assert effective_limits({"memory.max": "max", "cpu.max": "max 100000", "pids.max": "max"}) == {
        "memory": UNLIMITED,
        "cpus": UNLIMITED,
        "pids": UNLIMITED,
    }


def test_stable_info_drops_what_changes_between_two_calls_and_keeps_what_the_checks_depend_on():
    docker_before = {
        "ServerVersion": "20.10.24",
        "Driver": "overlay2",
        "CgroupVersion": "1",
        "SecurityOptions": ["name=seccomp,profile=default"],
        "Containers": 3,
        "ContainersRunning": 1,
        "Images": 7,
        "SystemTime": "2026-12-02T21:00:00Z",
        "NGoroutines": 40,
    }
    docker_after = {**docker_before, "Containers": 5, "ContainersRunning": 2, "Images": 8, "SystemTime": "later", "NGoroutines": 52}
    assert stable_info(docker_before) == stable_info(docker_after)
    assert stable_info(docker_before) == {
        "CgroupVersion": "1",
        "Driver": "overlay2",
        "SecurityOptions": ["name=seccomp,profile=default"],
        "ServerVersion": "20.10.24",
    }
    # A change the checks depend on is still seen.
    assert stable_info(docker_before) != stable_info({**docker_before, "CgroupVersion": "2"})
    podman = {
        "host": {"cgroupVersion": "v1", "uptime": "1h", "memFree": 1, "security": {"rootless": True}},
        "store": {"graphDriverName": "overlay", "graphRootUsed": 10, "containerStore": {"number": 2}},
        "version": {"Version": "4.3.1"},
    }
    later = {
        "host": {"cgroupVersion": "v1", "uptime": "2h", "memFree": 9, "security": {"rootless": True}},
        "store": {"graphDriverName": "overlay", "graphRootUsed": 99, "containerStore": {"number": 4}},
        "version": {"Version": "4.3.1"},
    }
    assert stable_info(podman) == stable_info(later)
    assert stable_info(podman)["store"] == {"graphDriverName": "overlay"}
    assert stable_info(podman) != stable_info({**podman, "version": {"Version": "4.9.3"}})


def test_a_check_record_round_trips_through_its_dict():
    checks = CheckList(required=["info"])
    original = checks.run("info", lambda: (True, "docker 20.10, rootful"))
    copy = Check.from_dict(original.as_dict())
    assert copy.as_dict() == original.as_dict()
    assert copy.required is True
