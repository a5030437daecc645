"""`./run site` reads ansible-playbook's PLAY RECAP to assert the second run changed nothing."""

from __future__ import annotations

from tests.harness.cli import parse_recap

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
