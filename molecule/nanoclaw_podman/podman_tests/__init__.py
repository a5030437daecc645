"""The podman role's verify tests.

A package, so that its conftest is podman_tests.conftest and not a second `conftest` next to
../../nanoclaw_common/tests/conftest.py, whose tests import from it.
"""
