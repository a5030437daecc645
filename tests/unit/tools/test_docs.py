"""The documentation set matches the code it describes."""

from __future__ import annotations

import re

import pytest
import yaml

from tools import surveys

REPO = surveys.REPO


def _managed_env_keys() -> dict[str, list[str]]:
    data = yaml.safe_load((REPO / "roles" / "nanoclaw" / "vars" / "main.yml").read_text())
    (keys,) = [v for v in data.values() if isinstance(v, dict) and set(v) == {"v1", "v2"}]
    return keys


@pytest.mark.parametrize("generation", ["v1", "v2"])
def test_env_example_shows_every_key_the_role_manages(generation: str) -> None:
    text = (REPO / "examples" / "env.example").read_text()
    shown = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = sorted(set(_managed_env_keys()[generation]) - shown)
    assert not missing, f"examples/env.example lacks the {generation} keys {missing}"


def test_readme_links_every_document() -> None:
    readme = (REPO / "README.md").read_text()
    for doc in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"README.md does not link docs/{doc.name}"


def test_architecture_names_every_role_and_playbook() -> None:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    for role in sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir()):
        assert f"`{role}`" in text, role
    for playbook in ("site.yml", "runtime.yml", "image.yml", "compat_smoke.yml", "upgrade.yml", "uninstall.yml"):
        assert playbook in text, playbook
        assert (REPO / "playbooks" / playbook).is_file(), playbook


def test_site_tags_in_the_docs_exist_in_site_yml() -> None:
    site = (REPO / "playbooks" / "site.yml").read_text() + "".join(p.read_text() for p in (REPO / "playbooks" / "tasks").glob("*.yml"))
    for tag in ("preflight", "runtime", "nanoclaw", "image", "compat", "smoke", "kubernetes"):
        assert re.search(rf"tags: \[[^\]]*\b{tag}\b", site), tag
