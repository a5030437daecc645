"""The AWX configuration as code matches the roles: the credential type injects exactly the
role variables its fields are for, secrets only into no_log options, and every job template
points at a playbook and a generated survey that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tools import surveys

AWX = surveys.REPO / "playbooks" / "awx"
FIELD = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")


def credential_type() -> dict:
    return yaml.safe_load((AWX / "credential_type.yml").read_text())


def configure_play() -> dict:
    return yaml.safe_load((AWX / "configure.yml").read_text())[0]


def test_injected_extra_vars_are_role_options() -> None:
    specs = surveys.load_specs()
    injected = credential_type()["injectors"]["extra_vars"]
    unknown = sorted(set(injected) - set(specs))
    assert not unknown, f"the credential type injects variables no role's meta/argument_specs.yml defines: {unknown}"


def test_every_field_is_injected_once_and_only_fields_are() -> None:
    ctype = credential_type()
    fields = {f["id"] for f in ctype["inputs"]["fields"]}
    used = []
    for name, template in ctype["injectors"]["extra_vars"].items():
        m = FIELD.match(template)
        assert m, f"{name}: the injector should be exactly one field, got {template!r}"
        used.append(m.group(1))
    assert sorted(used) == sorted(fields), f"fields {sorted(fields)} vs injected {sorted(used)}"


def test_secret_fields_go_to_no_log_options_and_back() -> None:
    specs = surveys.load_specs()
    ctype = credential_type()
    secret = {f["id"]: bool(f.get("secret")) for f in ctype["inputs"]["fields"]}
    for name, template in ctype["injectors"]["extra_vars"].items():
        field = FIELD.match(template).group(1)  # type: ignore[union-attr]
        no_log = bool(specs[name][1].get("no_log"))
        assert secret[field] == no_log, f"{field} (secret={secret[field]}) is injected into {name} (no_log={no_log})"


def test_credential_type_kind_is_one_awx_accepts_for_custom_types() -> None:
    assert credential_type()["kind"] in ("cloud", "net")


def test_job_templates_have_their_playbook_and_survey() -> None:
    templates = configure_play()["vars"]["awx_job_templates"]
    generated = set(yaml.safe_load(surveys.CONFIG.read_text()))
    assert {t["key"] for t in templates} == generated
    for template in templates:
        assert (surveys.REPO / template["playbook"]).is_file(), template["playbook"]
        assert (AWX / "surveys" / f"{template['key']}.json").is_file()


def test_configure_uses_only_awx_modules_and_builtins() -> None:
    keywords = {"name", "when", "loop", "loop_control", "no_log", "register", "vars"}
    for task in configure_play()["tasks"]:
        (module,) = set(task) - keywords
        assert module.startswith(("awx.awx.", "ansible.builtin.")), module


def test_inventory_source_path_exists() -> None:
    path = configure_play()["vars"]["awx_inventory_source_path"]
    assert Path(surveys.REPO / path).is_file(), path
