"""AWX surveys are generated from the roles' argument specs; the committed ones must not drift."""

from __future__ import annotations

import pytest

from tools import surveys


def test_committed_surveys_match_the_argument_specs() -> None:
    assert surveys.main(["--check"]) == 0, "run: python3 -m tools.surveys"


def test_every_survey_variable_is_a_role_option() -> None:
    specs = surveys.load_specs()
    for survey in surveys.build(surveys.yaml.safe_load(surveys.CONFIG.read_text()), specs).values():
        for q in survey["spec"]:
            assert q["variable"] in specs


def test_unknown_variable_is_reported_by_name() -> None:
    with pytest.raises(surveys.SurveyError, match="nanoclaw_nope"):
        surveys.build({"site": {"name": "x", "variables": ["nanoclaw_nope"]}}, surveys.load_specs())


@pytest.mark.parametrize(
    ("option", "expected_type", "expected_default"),
    [
        ({"type": "int", "default": 5}, "integer", 5),
        ({"type": "bool", "default": False}, "multiplechoice", "false"),
        ({"type": "str", "choices": ["v1", "v2"], "default": "v2"}, "multiplechoice", "v2"),
        ({"type": "path", "default": "/etc"}, "text", "/etc"),
        ({"type": "str", "no_log": True, "default": "s3cret"}, "password", ""),
    ],
)
def test_types_map_to_survey_questions(option: dict, expected_type: str, expected_default: object) -> None:
    q = surveys.question("nanoclaw_x_thing", "x", {"description": ["A", "thing."], **option})
    assert q["type"] == expected_type
    assert q["default"] == expected_default
    assert q["question_name"] == "Thing"
    assert q["question_description"] == "[x] A thing."


def test_secret_default_never_reaches_the_survey() -> None:
    q = surveys.question("nanoclaw_x_key", "x", {"type": "str", "no_log": True, "default": "s3cret"})
    assert "s3cret" not in str(q)


def test_dict_options_are_refused() -> None:
    with pytest.raises(surveys.SurveyError, match="type 'dict'"):
        surveys.question("nanoclaw_x_map", "x", {"type": "dict"})
