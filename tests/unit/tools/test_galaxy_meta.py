"""What Ansible Galaxy reads besides the content: galaxy.yml's dependencies and build_ignore, and the
changelog's "New Roles". (galaxy-importer itself imports the built tarball in ./run build.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion

REPO = Path(__file__).resolve().parents[3]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
BIN = Path(sys.executable).parent
# The collections the pinned `ansible` package ships (tests/requirements.txt): the universe of
# namespace.collection names a reference in the content can point at.
SHIPPED = Path(next(p for p in sys.path if (Path(p) / "ansible_collections" / "community").is_dir())) / "ansible_collections"
FQCN = re.compile(r"\b([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+\b")


def _used_collections() -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    files = [p for d in ("roles", "playbooks", "plugins") for p in (REPO / d).rglob("*") if p.suffix in (".yml", ".yaml", ".py", ".j2")]
    for path in files:
        for namespace, name in set(FQCN.findall(path.read_text())):
            if namespace in ("ansible", "nanoclaw") and name in ("builtin", "legacy", "provision", "module_utils", "plugins"):
                continue
            if (SHIPPED / namespace / name / "MANIFEST.json").exists():
                used.setdefault(f"{namespace}.{name}", []).append(str(path.relative_to(REPO)))
    return used


def test_every_collection_the_content_uses_is_declared_and_every_declared_one_is_used() -> None:
    used = _used_collections()
    declared = set(GALAXY["dependencies"])
    assert set(used) - declared == set(), f"used but not in galaxy.yml dependencies: { {c: used[c][:3] for c in set(used) - declared} }"
    assert declared - set(used) == set(), f"declared in galaxy.yml but used nowhere: {declared - set(used)}"


def test_awx_is_declared_for_the_awx_playbooks() -> None:
    assert any(p.startswith("playbooks/awx/") for p in _used_collections()["awx.awx"])
    assert "awx.awx" in GALAXY["dependencies"]


@pytest.mark.parametrize("collection", sorted(GALAXY["dependencies"]))
def test_each_dependency_range_admits_the_version_the_ansible_package_ships(collection: str) -> None:
    namespace, name = collection.split(".")
    shipped = json.loads((SHIPPED / namespace / name / "MANIFEST.json").read_text())["collection_info"]["version"]
    for clause in GALAXY["dependencies"][collection].split(","):
        op, version = re.match(r"\s*(>=|<=|<|>|==|!=)\s*(\S+)", clause).groups()
        holds = {
            ">=": LooseVersion(shipped) >= LooseVersion(version),
            "<": LooseVersion(shipped) < LooseVersion(version),
            ">": LooseVersion(shipped) > LooseVersion(version),
            "<=": LooseVersion(shipped) <= LooseVersion(version),
            "==": shipped == version,
            "!=": shipped != version,
        }[op]
        assert holds, f"{collection} {shipped} (shipped with ansible) is outside {GALAXY['dependencies'][collection]}"


# Leftovers of a working tree that has run the tools (ansible-lint, molecule, pytest, coverage,
# editors); none may end up in the tarball.
POLLUTION = [
    ".ansible/collections/ansible_collections/x/MANIFEST.json",
    "molecule/nanoclaw_podman/.ansible/tmp/x",
    ".coverage",
    ".coverage.host.1234.567890",
    "coverage.xml",
    "htmlcov/index.html",
    "molecule/nanoclaw_podman/.cache/state.yml",
    "molecule/shared/.cache/x",
    ".cache/collections/x",
    "tests/output/junit-unit.xml",
    "plugins/modules/__pycache__/agent_smoke.cpython-311.pyc",
    "tools/__pycache__/role_docs.cpython-311.pyc",
    ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/0.17.6/x",
    ".hypothesis/examples/x",
    ".mypy_cache/3.11/x",
    ".tox/py/x",
    ".venv/bin/python",
    ".idea/workspace.xml",
    ".vscode/settings.json",
    "roles/podman/tasks/.install.yml.swp",
    "playbooks/site.retry",
    "changelogs/.plugin-cache.yaml",
    "nanoclaw-provision-0.0.1.tar.gz",
]


def _tarball_members(tree: Path, out: Path) -> set[str]:
    out.mkdir()
    argv = [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(tree)]
    subprocess.run(argv, check=True, capture_output=True)
    with tarfile.open(next(out.glob("nanoclaw-provision-*.tar.gz"))) as tar:
        return {m.name for m in tar.getmembers()}


def test_a_polluted_tree_builds_the_same_tarball_as_a_clean_one(tmp_path: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True, text=True)
    clean = tmp_path / "clean"
    for name in filter(None, files.stdout.split("\0")):
        if (REPO / name).is_file():
            (clean / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clean / name)
    polluted = tmp_path / "polluted"
    shutil.copytree(clean, polluted, symlinks=True)
    for name in POLLUTION:
        (polluted / name).parent.mkdir(parents=True, exist_ok=True)
        (polluted / name).write_text("left over\n")
    clean_members = _tarball_members(clean, tmp_path / "clean-out")
    polluted_members = _tarball_members(polluted, tmp_path / "polluted-out")
    assert "roles/podman/README.md" in clean_members
    assert "roles/podman/tasks/install.yml" in clean_members
    assert polluted_members - clean_members == set()
    assert clean_members == polluted_members


def _fragments() -> list[dict]:
    return [yaml.safe_load(p.read_text()) or {} for p in sorted((REPO / "changelogs" / "fragments").glob("*.yml"))]


def test_every_role_is_announced_under_new_roles() -> None:
    """antsibull-changelog lists a role under "New Roles" from an ``add object.role`` entry (or a
    version_added of the main entry point, when it was released)."""
    changes = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text())
    released = {
        obj["name"] for release in (changes.get("releases") or {}).values() for obj in (release.get("objects") or {}).get("role", [])
    }
    announced = {entry["name"] for fragment in _fragments() for entry in fragment.get("add object.role", [])}
    roles = {p.name for p in (REPO / "roles").iterdir() if p.is_dir()}
    assert roles - announced - released == set(), "add the role to an 'add object.role' changelog fragment"
    assert announced - roles == set()
    # The fragments' format itself is checked by ansible-test sanity's "changelog" test.
