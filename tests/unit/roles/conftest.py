"""Fixtures of the role tests that run ansible-playbook against this machine."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def needs_root():
    if os.geteuid() != 0:
        pytest.skip("host capability missing: root (the role's tasks run as root on a real host)")
