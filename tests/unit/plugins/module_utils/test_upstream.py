"""NanoClaw's conventions (module_utils/_upstream.py) checked against the REAL upstream source.

The upstream bundle (tests/harness/upstream.py finds it) holds upstream's trees at v1.2.53 and
v2.0.64. What can be read mechanically is read here and compared with the one table the roles,
modules and docs use; the checkout engine's central case (a pin bump after the host ran) runs on
the real tree too.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from ansible_collections.nanoclaw.provision.plugins.module_utils._checkout import Checkout
from ansible_collections.nanoclaw.provision.plugins.module_utils._upstream import (
    ENV_KEYS,
    KNOWN_PINS,
    RUNTIME_PATHS,
    SERVICE_ENV_KEYS,
    conventions,
    dotenv_keys,
    generation_of,
)
from tests.harness import upstream as harness_upstream
from tests.harness.common import HarnessError


@pytest.fixture(scope="module")
def real() -> harness_upstream.Upstream:
    try:
        return harness_upstream.mirror()
    except HarnessError as exc:  # a machine without the bundle and without internet
        pytest.skip(f"real upstream NanoClaw not available: {exc}")


def show(real, generation: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(real.bare), "show", f"{real.pins[generation]}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def src_files(real, generation: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(real.bare), "ls-tree", "-r", "--name-only", real.pins[generation], "--", "src"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [p for p in out.splitlines() if p.endswith(".ts") and not p.endswith(".test.ts")]


@pytest.mark.parametrize("generation", ["v1", "v2"])
def test_env_keys_are_exactly_what_src_reads_from_dotenv(tmp_path, real, generation):
    """Every readEnvFile([...]) call in src/ (not setup/, not tests) at the pin, read from git by
    the checkout engine as the nanoclaw_checkout module returns it."""
    checkout = Checkout(str(tmp_path / "nanoclaw"), list(RUNTIME_PATHS))
    checkout.ensure(f"file://{real.bare}", real.pins[generation])
    sources = checkout.sources(real.pins[generation])
    assert "src/config.ts" in sources
    assert not any(p.endswith(".test.ts") is False and not p.startswith("src/") for p in sources)
    assert sources["src/config.ts"] == show(real, generation, "src/config.ts")
    assert dotenv_keys(sources) == sorted(ENV_KEYS[generation])


@pytest.mark.parametrize("generation", ["v1", "v2"])
def test_service_env_keys_are_read_from_the_process_environment(real, generation):
    config = show(real, generation, "src/config.ts")
    used = "\n".join(show(real, generation, p) for p in src_files(real, generation) if p != "src/config.ts")
    for key in ("CONTAINER_IMAGE", "CONTAINER_TIMEOUT", "IDLE_TIMEOUT", "MAX_CONCURRENT_CONTAINERS"):
        assert f"process.env.{key}" in config
        # A constant of config.ts that nothing imports is read but has no effect (v2 still defines
        # MAX_CONCURRENT_CONTAINERS, CONTAINER_TIMEOUT and IDLE_TIMEOUT; comments may name them).
        imported = re.search(rf"import\s*{{[^}}]*\b{key}\b[^}}]*}}\s*from\s*'[./]+config(\.js)?'", used) is not None
        effective = key == "CONTAINER_IMAGE" or imported
        assert effective == (key in SERVICE_ENV_KEYS[generation]), key


def test_generation_and_known_pins(real):
    for generation in ("v1", "v2"):
        version = json.loads(show(real, generation, "package.json"))["version"]
        assert generation_of(version) == generation
    assert sorted(KNOWN_PINS.values()) == ["v1", "v2"]
    assert set(KNOWN_PINS) == set(harness_upstream.UPSTREAM_PINS.values())
    assert "pnpm@" in json.loads(show(real, "v2", "package.json"))["packageManager"]


def test_names_follow_upstream(real):
    slug_source = show(real, "v2", "src/install-slug.ts")
    assert "createHash('sha1')" in slug_source
    assert ".slice(0, 8)" in slug_source
    assert "nanoclaw-v2-${getInstallSlug(projectRoot)}" in slug_source
    assert "nanoclaw-agent-v2-${getInstallSlug(projectRoot)}" in slug_source
    root = "/home/nanoclaw/nanoclaw"
    slug = hashlib.sha1(root.encode()).hexdigest()[:8]
    v2 = conventions("v2", root, physical=True)
    assert (v2["unit"], v2["image"], v2["container_label"]) == (
        f"nanoclaw-v2-{slug}.service",
        f"nanoclaw-agent-v2-{slug}:latest",
        f"nanoclaw-install={slug}",
    )
    assert "'nanoclaw.service'" in show(real, "v1", "setup/service.ts")
    assert "'nanoclaw-agent:latest'" in show(real, "v1", "src/config.ts")
    assert conventions("v1", root, physical=True)["image"] == "nanoclaw-agent:latest"


@pytest.mark.parametrize("generation", ["v1", "v2"])
def test_runtime_paths_are_what_the_host_writes_and_upstream_tracks_files_there(real, generation):
    config = show(real, generation, "src/config.ts")
    for name in ("store", "groups", "data"):
        assert f"'{name}'" in config
    tracked = subprocess.run(
        ["git", "-C", str(real.bare), "ls-tree", "-r", "--name-only", real.pins[generation], "--", *RUNTIME_PATHS],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked == ["groups/global/CLAUDE.md", "groups/main/CLAUDE.md"]


def test_pin_bump_v1_to_v2_on_the_real_tree_keeps_what_both_hosts_did(tmp_path, real):
    root = tmp_path / "nanoclaw"
    url = f"file://{real.bare}"
    Checkout(str(root), list(RUNTIME_PATHS)).ensure(url, real.pins["v1"])
    # v1 agents write memory into the tracked CLAUDE.md files (container/agent-runner: the group
    # folder is mounted rw at /workspace/group, CLAUDE.md is the memory file).
    (root / "groups/main/CLAUDE.md").write_text("memory of the main group\n")
    (root / "data").mkdir()
    (root / "data/messages.db").write_bytes(b"sqlite")
    result = Checkout(str(root), list(RUNTIME_PATHS)).ensure(url, real.pins["v2"])
    assert result["after"] == real.pins["v2"]
    assert (root / "groups/main/CLAUDE.md").read_text() == "memory of the main group\n"
    # v2's own start-up migration (src/claude-md-compose.ts migrateGroupsToClaudeLocal), done by hand.
    (root / "groups/main/CLAUDE.md").rename(root / "groups/main/CLAUDE.local.md")
    for f in (root / "groups/global").iterdir():
        f.unlink()
    (root / "groups/global").rmdir()
    again = Checkout(str(root), list(RUNTIME_PATHS)).ensure(url, real.pins["v2"])
    assert not again["changed"]
    assert again["code_changes"] == []
    assert sorted(again["runtime_changes"]) == ["D groups/global/CLAUDE.md", "D groups/main/CLAUDE.md"]
    assert (root / "groups/main/CLAUDE.local.md").read_text() == "memory of the main group\n"
    assert Path(root / "data/messages.db").read_bytes() == b"sqlite"
