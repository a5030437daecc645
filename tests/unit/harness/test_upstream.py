"""tests/harness/upstream.py: where the real upstream source comes from, and clear errors when it
is not what the tests need (a bundle without one of the pins)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.harness import upstream
from tests.harness.common import HarnessError


def bundle(tmp_path: Path, branches: dict[str, str]) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    for branch, version in branches.items():
        subprocess.run([*git, "switch", "-q", "--orphan", branch], check=True)
        (work / "package.json").write_text(json.dumps({"name": "nanoclaw", "version": version}))
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", version], check=True)
    out = tmp_path / "nanoclaw.bundle"
    subprocess.run([*git, "bundle", "create", str(out), *branches], check=True, capture_output=True)
    return out


def test_a_bundle_gives_its_v1_and_v2_heads(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCLAW_UPSTREAM", str(bundle(tmp_path, {"v1": "1.2.53", "v2": "2.0.64"})))
    monkeypatch.setattr(upstream, "CACHE", tmp_path / "cache")
    source = upstream.mirror()
    assert source.versions == {"v1": "1.2.53", "v2": "2.0.64"}
    assert (source.bare / "HEAD").exists()


def test_a_bundle_without_a_pin_is_refused_naming_the_variable(tmp_path, monkeypatch):
    path = bundle(tmp_path, {"v1": "1.2.53"})
    monkeypatch.setenv("NANOCLAW_UPSTREAM", str(path))
    monkeypatch.setattr(upstream, "CACHE", tmp_path / "cache")
    with pytest.raises(HarnessError, match=rf"NANOCLAW_UPSTREAM={path}: the bundle has no branches v1 and v2 \(it has \['v1'\]\)"):
        upstream.mirror()


def test_a_pin_of_the_wrong_generation_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCLAW_UPSTREAM", str(bundle(tmp_path, {"v1": "1.2.53", "v2": "3.0.0"})))
    monkeypatch.setattr(upstream, "CACHE", tmp_path / "cache")
    with pytest.raises(HarnessError, match=r"the v2 pin [0-9a-f]{40} is NanoClaw '3.0.0', not v2"):
        upstream.mirror()


def test_a_missing_bundle_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCLAW_UPSTREAM", str(tmp_path / "none.bundle"))
    with pytest.raises(HarnessError, match=r"NANOCLAW_UPSTREAM=.*no such bundle file"):
        upstream.locate()
