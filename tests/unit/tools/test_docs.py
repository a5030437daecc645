"""The documentation set matches the code it describes."""

from __future__ import annotations

import re

import pytest
import yaml

from ansible_collections.nanoclaw.provision.plugins.module_utils._upstream import ENV_KEYS
from tools import surveys

REPO = surveys.REPO


def _managed_env_keys() -> dict[str, list[str]]:
    """The keys each generation reads (the one table, plugins/module_utils/_upstream.py), all of
    which the role manages (roles/nanoclaw/vars/main.yml names the variable behind each)."""
    variables = yaml.safe_load((REPO / "roles" / "nanoclaw" / "vars" / "main.yml").read_text())["__nanoclaw_env_vars"]
    for keys in ENV_KEYS.values():
        assert set(keys) <= set(variables)
    return {g: list(k) for g, k in ENV_KEYS.items()}


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
