"""The command runner with real processes (no container engine needed)."""

from __future__ import annotations

import os
import pwd

import pytest

from ansible_collections.nanoclaw.provision.plugins.module_utils._runner import (
    Runner,
    RunnerError,
    current_account,
    resolve_account,
    user_environment,
)


def test_stdin_reaches_the_command_and_stdout_streams():
    seen = []
    done = Runner(current_account(), "cat").run([], stdin_data="hello\n" * 1000, timeout=10, on_stdout=seen.append)
    assert done.ok
    assert done.stdout == "hello\n" * 1000
    assert "".join(seen) == done.stdout
    assert done.first_byte is not None
    assert 0 <= done.first_byte <= done.seconds


def test_a_command_past_its_deadline_is_killed():
    done = Runner(current_account(), "sleep").run(["30"], timeout=0.5)
    assert done.timed_out
    assert not done.ok
    assert done.seconds < 10


def test_exit_code_and_stderr_tail():
    done = Runner(current_account(), "sh").run(["-c", "echo one >&2; echo two >&2; exit 3"], timeout=10)
    assert done.rc == 3
    assert done.tail(1) == "two"


def test_unknown_user_and_missing_executable_are_clear_errors():
    with pytest.raises(RunnerError, match="does not exist"):
        resolve_account("no-such-user-nanoclaw")
    with pytest.raises(RunnerError, match="not on PATH"):
        Runner(current_account(), "no-such-binary-nanoclaw").resolve()


def test_user_environment_puts_the_users_own_bin_first():
    account = current_account()
    env = user_environment(account, {"DOCKER_HOST": "unix:///x.sock"})
    assert env["PATH"].split(":", maxsplit=1)[0] == os.path.join(account.home, ".local", "bin")
    assert env["HOME"] == account.home
    assert env["DOCKER_HOST"] == "unix:///x.sock"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_runs_as_another_user():
    nobody = pwd.getpwnam("nobody")
    done = Runner(resolve_account("nobody"), "id").run(["-u"], timeout=10)
    assert done.stdout.strip() == str(nobody.pw_uid)


def test_a_deadline_hook_ends_the_command_early():
    import time

    from ansible_collections.nanoclaw.provision.plugins.module_utils._runner import Runner as R

    soon = time.monotonic() + 0.5
    started = time.monotonic()
    done = R(current_account(), "sleep").run(["30"], timeout=60, deadline=lambda: soon)
    assert done.timed_out
    assert time.monotonic() - started < 10


def test_unit_environment_reads_systemd_quoting(tmp_path):
    from ansible_collections.nanoclaw.provision.plugins.module_utils._runner import unit_environment

    unit = tmp_path / "nanoclaw.service"
    unit.write_text(
        "[Unit]\n"
        'Environment="NOT_IN_SERVICE=1"\n'
        "[Service]\n"
        "# a comment\n"
        'Environment="PATH=/usr/local/libexec/nanoclaw-provision/abcd1234:/usr/bin:/bin"\n'
        'Environment="QUOTED=a \\"b\\" c" PLAIN=x\n'
        'Environment="PERCENT=100%%"\n'
        "Environment=PLAIN=y\n"
        "ExecStart=/usr/bin/node dist/index.js\n"
    )
    env = unit_environment(str(unit))
    assert env == {
        "PATH": "/usr/local/libexec/nanoclaw-provision/abcd1234:/usr/bin:/bin",
        "QUOTED": 'a "b" c',
        "PLAIN": "y",
        "PERCENT": "100%",
    }
