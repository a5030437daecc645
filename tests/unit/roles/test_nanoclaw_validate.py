"""nanoclaw role: bad input fails before anything is touched, one error per input naming its variable.

A real ansible-playbook run of the role against this machine in check mode: validate.yml runs
first and fails, so the role reaches nothing else (the service user does not even exist here).
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.roles.playbook import flat, run_playbook

PLAY = """---
- name: The nanoclaw role
  hosts: all
  gather_facts: false
  roles:
    - role: nanoclaw.provision.nanoclaw
"""

# Issue 16.10: each passed silently and did harm (MemoryMax=-2048M, a unit split or injected).
BAD = {
    "nanoclaw_agent_cpus": (-1, "nanoclaw_agent_cpus must be above 0, got -1"),
    "nanoclaw_agent_memory_mib": (0, "nanoclaw_agent_memory_mib must be at least 6 (the engines refuse less), got 0"),
    "nanoclaw_agent_pids_limit": (-5, "nanoclaw_agent_pids_limit must be at least 1, got -5"),
    "nanoclaw_max_concurrent_containers": (0, "nanoclaw_max_concurrent_containers must be at least 1, got 0"),
    "nanoclaw_host_reserve_mib": (-4096, "nanoclaw_host_reserve_mib must not be negative, got -4096"),
    "nanoclaw_container_timeout_ms": (0, "nanoclaw_container_timeout_ms must be at least 1, got 0"),
    "nanoclaw_idle_timeout_ms": (-1, "nanoclaw_idle_timeout_ms must be at least 1, got -1"),
    "nanoclaw_install_dir": (
        "/srv/nano claw%h\nExecStartPre=/bin/evil",
        "nanoclaw_install_dir may only hold letters, digits and . _ / @ + -",
    ),
    "nanoclaw_node_tarball_dir": ("/opt/node dir", "nanoclaw_node_tarball_dir may only hold letters, digits and . _ / @ + -"),
    "nanoclaw_docker_host": (
        "unix:///run/user/1000/podman/podman.sock\nExecStartPre=/bin/evil",
        "nanoclaw_docker_host must be empty or a URL such as unix:///run/user/1000/podman/podman.sock, without spaces, % or quotes",
    ),
    "nanoclaw_service_environment_extra": (
        {"HTTP_PROXY": "http://proxy:3128\nExecStartPre=/bin/evil", "GOOD": "x"},
        "nanoclaw_service_environment_extra: HTTP_PROXY: a value cannot contain a newline, carriage return or NUL",
    ),
}


def _result(out: str) -> str:
    """The failed task's result (ansible-core prints its message once more in an [ERROR] line above)."""
    assert "FAILED! =>" in out, out[-3000:]
    return out.split("FAILED! =>", 1)[1]


def test_every_bad_input_gets_one_error_naming_its_variable_and_nothing_runs(tmp_path: Path):
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    result = run_playbook(play, {name: value for name, (value, _m) in BAD.items()}, check=True)
    out = flat(result.stdout + result.stderr)
    assert result.returncode != 0, out[-3000:]
    assert "bad input, nothing was changed" in out, out[-3000:]
    for name, (_value, message) in BAD.items():
        assert _result(out).count(message) == 1, f"{name}: {message!r} not reported once:\n{out[-4000:]}"
    # validate.yml is the first thing the role does: nothing after it ran.
    assert "Read the host's current state" not in out
    assert "Look up the service user" not in out


def test_a_relative_install_dir_gets_one_error(tmp_path: Path):
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    result = run_playbook(play, {"nanoclaw_install_dir": "nano claw"}, check=True)
    out = flat(result.stdout + result.stderr)
    assert result.returncode != 0
    assert _result(out).count('nanoclaw_install_dir must be an absolute path, got "nano claw"') == 1, out[-3000:]
    assert "nanoclaw_install_dir may only hold" not in out


def test_good_values_pass_validation(tmp_path: Path):
    """The same variables with sane values get past validate.yml (and stop at the missing service user)."""
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    good = {
        "nanoclaw_agent_cpus": 0.5,
        "nanoclaw_agent_memory_mib": 512,
        "nanoclaw_install_dir": "/srv/nanoclaw-2.v2@prod",
        "nanoclaw_docker_host": "unix:///run/user/1000/podman/podman.sock",
        "nanoclaw_service_environment_extra": {"HTTP_PROXY": 'http://proxy:3128 100% "quoted"'},
        "nanoclaw_user": "nanoclaw-validate-test-nobody",
    }
    result = run_playbook(play, good, check=True)
    out = flat(result.stdout + result.stderr)
    assert "bad input, nothing was changed" not in out, out[-3000:]
    assert "nanoclaw_user: the user 'nanoclaw-validate-test-nobody' does not exist" in out, out[-3000:]
