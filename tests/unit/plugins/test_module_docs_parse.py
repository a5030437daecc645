"""Every module's DOCUMENTATION, EXAMPLES and RETURN is YAML that parses.

ansible-test sanity (validate-modules, yamllint) checks much more, but only in the sanity, build
and oldest-core stages; a ': ' inside a plain scalar then fails three stages at once. This reads the
strings without importing the modules, in a second."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[3] / "plugins" / "modules").glob("*.py"))
BLOCKS = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def _blocks(path: Path) -> dict[str, str]:
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in BLOCKS:
            found[node.targets[0].id] = node.value.value
    return found


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_documentation_examples_and_return_parse(path: Path):
    blocks = _blocks(path)
    assert set(blocks) == set(BLOCKS), f"{path.name} lacks {set(BLOCKS) - set(blocks)}"
    assert isinstance(yaml.safe_load(blocks["DOCUMENTATION"]), dict)
    assert isinstance(yaml.safe_load(blocks["EXAMPLES"]), list)
    returned = yaml.safe_load(blocks["RETURN"])
    assert returned is None or isinstance(returned, dict)


def test_a_colon_in_a_plain_scalar_is_caught():
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load("key:\n  description:\n    - a list item whose text goes on,\n      then is left out: whether it is\n  other: 1\n")
