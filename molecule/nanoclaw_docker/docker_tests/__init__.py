"""The docker role's verify tests.

A package, so that its conftest is docker_tests.conftest and not a second `conftest` next to
../../nanoclaw_common/tests/conftest.py, whose tests import from it.
"""
