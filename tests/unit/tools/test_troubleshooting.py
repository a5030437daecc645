"""docs/TROUBLESHOOTING.md documents every check runtime_compat has, and nothing else under that name."""

from __future__ import annotations

import re

from tools import surveys

MODULE = surveys.REPO / "plugins" / "modules" / "runtime_compat.py"
DOC = surveys.REPO / "docs" / "TROUBLESHOOTING.md"


def module_checks() -> set[str]:
    source = MODULE.read_text()
    names = set(re.findall(r"checks\.run\(\s*\"(\w+)\"", source))
    names |= set(re.findall(r"checks\.skip\(\s*\"(\w+)\"", source))
    # The CLI patterns (the names the module's `required` option accepts) are checks too.
    for block in re.findall(r"^(?:COMMON = \[.*?\]|PATTERNS = \{.*?^\})", source, re.S | re.M):
        names |= set(re.findall(r"\"([a-z_]+)\"", block)) - {"v1", "v2"}
    return names


def documented_checks() -> set[str]:
    return set(re.findall(r"^### `(\w+)`$", DOC.read_text(), re.M))


def test_the_module_has_checks_to_document() -> None:
    assert {"info", "build", "memory_limit", "rlimits", "ps_filter_label"} <= module_checks()


def test_every_runtime_compat_check_is_documented() -> None:
    missing = sorted(module_checks() - documented_checks())
    assert not missing, f"docs/TROUBLESHOOTING.md lacks a '### `name`' section (signature and fix) for: {missing}"


def test_no_documented_check_is_unknown_to_the_module() -> None:
    unknown = sorted(documented_checks() - module_checks())
    assert not unknown, f"docs/TROUBLESHOOTING.md documents checks runtime_compat does not have: {unknown}"


def test_every_check_section_has_a_signature_and_a_fix() -> None:
    text = DOC.read_text()
    sections = re.split(r"^### ", text, flags=re.M)[1:]
    for section in sections:
        name = section.split("\n", 1)[0]
        assert "**Signature**" in section, name
        assert "**Fix**" in section, name
