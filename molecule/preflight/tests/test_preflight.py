"""Verify nanoclaw.provision.preflight on the molecule targets (Debian 12 and 13)."""

from __future__ import annotations

import json
import os

import pytest
import testinfra
from conftest import run_preflight

FACT = "/etc/ansible/facts.d/nanoclaw_preflight.fact"


def _facts(host) -> dict:
    f = host.file(FACT)
    assert f.exists, f"{FACT} missing after converge"
    return json.loads(f.content_string)


def test_fact_file_is_root_owned_and_readable(host):
    f = host.file(FACT)
    assert f.user == "root"
    assert f.group == "root"
    assert f.mode == 0o644


def test_distribution_matches_the_target(host):
    facts = _facts(host)
    major = host.file("/etc/debian_version").content_string.strip().split(".")[0]
    assert facts["distribution"] == "Debian"
    assert facts["distribution_version"] == major
    assert major in ("12", "13")


def test_systemd_is_detected_as_pid1(host):
    facts = _facts(host)
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    assert facts["pid1"] == "systemd"
    assert facts["systemd"] is True


def test_cgroup_mode_matches_the_mounted_hierarchy(host):
    facts = _facts(host)
    if host.file("/sys/fs/cgroup/cgroup.controllers").exists:
        expected = "v2"
    elif host.file("/sys/fs/cgroup/unified/cgroup.controllers").exists:
        expected = "hybrid"
    else:
        expected = "v1"
    assert facts["cgroup_mode"] == expected


def test_capacity_matches_the_kernel(host):
    facts = _facts(host)
    meminfo = host.file("/proc/meminfo").content_string
    mem_kib = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal:")))
    assert abs(facts["memory_mib"] - mem_kib // 1024) <= 1
    assert facts["cpus"] == int(host.check_output("nproc --all"))


def test_platform_is_reported_as_container(host):
    # The molecule targets are podman containers; a bare-metal or VM answer would be wrong.
    assert _facts(host)["platform"] == "container"
    assert _facts(host)["virtualization"].endswith("/guest")


# Bad input: driven once, against the Debian 12 target (the messages do not
# depend on the release), through real ansible-playbook runs of the role.


def _debian12():
    name = f"{os.environ['MOLECULE_SCENARIO_NAME']}-debian12"
    return name, testinfra.get_host(f"podman://{name}")


def test_too_little_memory_fails_naming_the_variable_and_changes_nothing():
    name, target = _debian12()
    before = target.file(FACT).mtime
    result = run_preflight(name, {"nanoclaw_preflight_concurrent_agents": 100000})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "too little memory: 100000 concurrent agents x 4096 MiB + 2048 MiB reserve" in out
    assert "nanoclaw_preflight_concurrent_agents" in out
    assert target.file(FACT).mtime == before


def test_every_problem_is_reported_together_naming_its_variable():
    name = _debian12()[0]
    result = run_preflight(
        name,
        {
            "nanoclaw_preflight_supported_distributions": {"Ubuntu": ["24.04"]},
            "nanoclaw_preflight_concurrent_agents": 100000,
            "nanoclaw_preflight_min_cpus": 4096,
        },
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unsupported distribution: this host runs Debian 12, supported are Ubuntu 24.04" in out
    assert "nanoclaw_preflight_supported_distributions" in out
    assert "too little memory" in out
    assert "too few CPUs" in out
    assert "nanoclaw_preflight_min_cpus is 4096" in out


def test_wrong_argument_type_is_rejected_by_the_argument_spec():
    name = _debian12()[0]
    result = run_preflight(name, {"nanoclaw_preflight_concurrent_agents": "many"})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "nanoclaw_preflight_concurrent_agents" in out
    assert "Validating arguments against arg spec" in out


@pytest.mark.parametrize("check", [False, True], ids=["run", "check_mode"])
def test_no_systemd_fails_when_a_service_is_needed(plain_container, check):
    result = run_preflight(plain_container, {"nanoclaw_preflight_concurrent_agents": 1}, check=check)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "systemd is not PID 1 (PID 1 is sleep)" in out
    assert "nanoclaw_preflight_require_systemd" in out


def test_no_systemd_is_accepted_when_no_service_is_needed(plain_container):
    result = run_preflight(
        plain_container,
        {"nanoclaw_preflight_concurrent_agents": 1, "nanoclaw_preflight_require_systemd": False},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "PID 1 sleep" in result.stdout
