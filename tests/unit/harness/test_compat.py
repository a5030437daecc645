"""The harness reads the claimed ansible-core and Python range from the collection's own files, finds
interpreters that really run, and refuses to run ansible-test without its offline pip bootstrap."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.harness import compat
from tests.harness.common import HarnessError


def test_the_oldest_core_is_the_lower_bound_of_requires_ansible() -> None:
    runtime = compat.RUNTIME.read_text()
    assert f'requires_ansible: ">={compat.oldest_core()}"' in runtime


def test_the_python_floor_is_the_lower_bound_of_python_requires() -> None:
    assert re.search(rf"python_requires: \"?>={re.escape(compat.target_python_floor())}\"?", compat.TEST_CONFIG.read_text())


def test_a_missing_bound_is_named() -> None:
    with pytest.raises(HarnessError, match=r"meta/runtime\.yml: no 'requires_ansible"):
        compat._lower_bound("requires_ansible: '*'\n", "requires_ansible", compat.RUNTIME)


def test_find_python_skips_an_interpreter_that_does_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pyenv shim for a version that is not selected exists on PATH but exits non-zero."""
    shim = tmp_path / "python3.99"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.99: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compat.find_python("3.99") is None


def test_find_python_finds_the_running_interpreter_version() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = compat.find_python(version)
    if found is None:
        pytest.skip(f"no python{version} on PATH, in /usr/bin or in pyenv")
    assert found.name.startswith("python")


def test_a_missing_pip_shim_fails_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "PIP_SHIM", compat.REPO / "tests" / "harness" / "files" / "no_such_get_pip.py")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(HarnessError) as failure:
        compat.provide_pip_bootstrap(tmp_path / "venv")
    message = str(failure.value)
    assert "missing tests/harness/files/no_such_get_pip.py" in message
    assert "cannot reach" in message
    assert not (tmp_path / ".ansible").exists()


def test_the_pip_shim_goes_where_ansible_test_looks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ansible-test's requirements.py uses ~/.ansible/test/cache/get_pip_<pip version>.py when it exists."""
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "ansible_test"
    (site / "_internal").mkdir(parents=True)
    (site / "_internal" / "python_requirements.py").write_text("infrastructure_packages = dict(pip='24.2', setuptools='1')\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    compat.provide_pip_bootstrap(tmp_path / "venv")
    placed = tmp_path / ".ansible" / "test" / "cache" / "get_pip_24_2.py"
    assert placed.read_text() == compat.PIP_SHIM.read_text()
