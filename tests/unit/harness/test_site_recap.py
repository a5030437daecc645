"""`./run site` reads ansible-playbook's PLAY RECAP to assert the second run changed nothing."""

from __future__ import annotations

from tests.harness.cli import parse_failures
from tests.harness.common import parse_recap

RECAP = """
PLAY RECAP *********************************************************************
nanoclaw-demo              : ok=187  changed=0    unreachable=0    failed=0    skipped=95   rescued=0    ignored=0
other.example.internal     : ok=12   changed=3    unreachable=1    failed=2    skipped=0    rescued=0    ignored=0
"""


def test_counts_per_host() -> None:
    recap = parse_recap(RECAP.splitlines())
    assert recap["nanoclaw-demo"] == {"ok": 187, "changed": 0, "unreachable": 0, "failed": 0}
    assert recap["other.example.internal"] == {"ok": 12, "changed": 3, "unreachable": 1, "failed": 2}


def test_no_recap_is_empty() -> None:
    assert parse_recap(["fatal: [x]: FAILED! => {}", "ERROR! the playbook could not be parsed"]) == {}


FAILED_RUN = """
TASK [nanoclaw.provision.nanoclaw : Install the docker wrapper] ****************
Wednesday 02 December 2026  15:40:01 +0000 (0:00:00.100)       0:10:00.000 ****
changed: [nanoclaw-demo-docker]

TASK [Probe something optional] ************************************************
fatal: [nanoclaw-demo]: FAILED! => changed=false
    msg: optional probe failed
...ignoring

TASK [Check the runtime's compatibility with NanoClaw] *************************
Wednesday 02 December 2026  15:51:40 +0000 (0:00:00.100)       0:12:17.000 ****
ok: [nanoclaw-demo]
fatal: [nanoclaw-demo-docker]: FAILED! => changed=false
    checks:
    - name: info
      passed: true
    - name: stop
      passed: false
    - name: build
      passed: true
    msg: 'required checks failed: stop: the container
        still exists'
    summary:
      ok: false

PLAY RECAP *********************************************************************
nanoclaw-demo-docker       : ok=166  changed=40   unreachable=0    failed=1    skipped=44   rescued=0    ignored=0
"""


def test_failures_name_the_task_and_keep_the_message() -> None:
    """What CI shows of a failed site run is its tail: the failed task and its msg, even when the
    result's lists come first, and not a failure the play ignored."""
    blocks = parse_failures(FAILED_RUN.splitlines(), limit=4)
    assert len(blocks) == 1
    lines = blocks[0].splitlines()
    assert lines[0] == "TASK [Check the runtime's compatibility with NanoClaw]"
    assert lines[1].startswith("fatal: [nanoclaw-demo-docker]: FAILED!")
    assert "    msg: 'required checks failed: stop: the container" in lines
    assert "        still exists'" in lines
    assert not any("summary" in line or "optional probe" in line for line in lines)


def test_no_failure_no_block() -> None:
    assert parse_failures(RECAP.splitlines()) == []
