"""Generate the AWX job template surveys from the roles' meta/argument_specs.yml.

The survey questions of each job template (playbooks/awx/surveys.yml lists the
variables) are derived from the argument specs, so a survey can never offer a
variable a role does not have, with another type, default or choice list.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tools._generated import sync

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "playbooks" / "awx" / "surveys.yml"
OUTPUT = REPO / "playbooks" / "awx" / "surveys"

# argument_spec type -> AWX survey question type
SIMPLE_TYPES = {"str": "text", "path": "text", "raw": "text", "int": "integer", "float": "float"}


class SurveyError(ValueError):
    """A survey asks for something the argument specs do not define."""


def load_specs(repo: Path = REPO) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every option of every role's main entry point: name -> (role, option spec)."""
    options: dict[str, tuple[str, dict[str, Any]]] = {}
    for spec_file in sorted(repo.glob("roles/*/meta/argument_specs.yml")):
        role = spec_file.parents[1].name
        data = yaml.safe_load(spec_file.read_text()) or {}
        main = (data.get("argument_specs") or {}).get("main") or {}
        for name, option in (main.get("options") or {}).items():
            options[name] = (role, option)
    return options


def _description(option: dict[str, Any]) -> str:
    text = option.get("description", "")
    if isinstance(text, list):
        text = " ".join(text)
    return " ".join(str(text).split())


def question(name: str, role: str, option: dict[str, Any]) -> dict[str, Any]:
    """One AWX survey question for the argument spec ``option`` of ``role``."""
    kind = option.get("type", "str")
    choices = option.get("choices")
    q: dict[str, Any] = {
        "variable": name,
        "question_name": name.removeprefix(f"nanoclaw_{role}_").replace("_", " ").capitalize(),
        "question_description": f"[{role}] {_description(option)}"[:1024],
        "required": bool(option.get("required", False)),
        "new_question": True,
    }
    default = option.get("default")
    if option.get("no_log"):
        q["type"] = "password"
        default = None
    elif choices:
        q["type"] = "multiselect" if kind == "list" else "multiplechoice"
        q["choices"] = [str(c) for c in choices]
    elif kind == "bool":
        q["type"] = "multiplechoice"
        q["choices"] = ["true", "false"]
        default = None if default is None else str(bool(default)).lower()
    elif kind in SIMPLE_TYPES:
        q["type"] = SIMPLE_TYPES[kind]
    else:
        raise SurveyError(f"{name} ({role}) is of type {kind!r}, which an AWX survey cannot ask for")
    if q["type"] == "integer":
        q["min"], q["max"] = 0, 2**31 - 1
    if q["type"] == "text":
        q["min"], q["max"] = 0, 1024
    if isinstance(default, list):
        default = "\n".join(str(d) for d in default)
    q["default"] = "" if default is None else default
    return q


def build(config: dict[str, Any], specs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    surveys: dict[str, dict[str, Any]] = {}
    for template, entry in config.items():
        spec = []
        for name in entry["variables"]:
            if name not in specs:
                raise SurveyError(f"survey {template!r} asks for {name!r}, which no role's meta/argument_specs.yml defines")
            role, option = specs[name]
            spec.append(question(name, role, option))
        surveys[template] = {"name": entry["name"], "description": entry.get("description", ""), "spec": spec}
    return surveys


def render(survey: dict[str, Any]) -> str:
    return json.dumps(survey, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed surveys differ")
    args = parser.parse_args(argv)
    surveys = build(yaml.safe_load(CONFIG.read_text()), load_specs())
    expected = {f"{name}.json": render(survey) for name, survey in surveys.items()}
    return sync(OUTPUT, expected, "*.json", what="surveys", script="tools.surveys", check=args.check)


if __name__ == "__main__":
    sys.exit(main())
