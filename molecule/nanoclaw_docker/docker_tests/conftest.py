"""Fixtures of the docker role's verify tests (molecule/shared/runtime_tests.py, shared with the other runtime).

These tests run in the nanoclaw_docker scenario next to ../../nanoclaw_common/tests, whose tests import
their helpers from that directory's conftest: this directory is a package (docker_tests.conftest) and
its tests import their helpers from runtime_tests, never from conftest.
"""

from __future__ import annotations

# Importing the fixtures here is what makes pytest see them (for the tests of this directory only).
from runtime_tests import node, smoke_image

__all__ = ["node", "smoke_image"]
