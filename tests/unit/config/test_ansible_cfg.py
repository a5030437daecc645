"""The checkout's ansible.cfg is what AWX projects and checkout runs use: no unsafe defaults in it."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_ansible_cfg_keeps_host_key_checking_on():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    value = cfg.get("defaults", "host_key_checking", fallback="true")
    assert value.strip().lower() in ("true", "yes", "1", "on"), (
        "ansible.cfg turns host key checking off for every project that uses it; turn it off only for the harness's own targets"
    )
    assert "StrictHostKeyChecking=no" not in (ROOT / "ansible.cfg").read_text()


def test_only_the_harness_turns_it_off_for_its_own_target():
    # The EE stage's SSH target is a container the harness starts, with a fresh host key each time.
    assert '"ANSIBLE_HOST_KEY_CHECKING": "False"' in (ROOT / "tests" / "harness" / "ee.py").read_text()
    for inventory in (ROOT / "inventories").rglob("*.yml"):
        text = inventory.read_text()
        assert "StrictHostKeyChecking=no" not in text, inventory
        assert "host_key_checking" not in text, inventory
