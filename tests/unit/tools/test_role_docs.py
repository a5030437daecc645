"""docs/roles/*.md are generated from the roles' argument specs; the committed pages must not drift."""

from __future__ import annotations

from tools import role_docs


def test_committed_role_pages_match_the_argument_specs() -> None:
    assert role_docs.main(["--check"]) == 0, "run: python3 tools/role_docs.py"


def test_every_role_has_a_page_listing_every_option() -> None:
    specs = role_docs.REPO.glob("roles/*/meta/argument_specs.yml")
    pages = role_docs.pages()
    for spec_file in specs:
        role = spec_file.parents[1].name
        options = role_docs.yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]["options"]
        for name in options:
            assert f"| `{name}` |" in pages[f"{role}.md"], f"{name} missing from docs/roles/{role}.md"


def test_secret_defaults_are_not_rendered() -> None:
    spec = {
        "argument_specs": {
            "main": {"short_description": "x", "options": {"nanoclaw_x_key": {"type": "str", "no_log": True, "default": "s3cret"}}}
        }
    }
    page = role_docs.render("x", spec)
    assert "s3cret" not in page
    assert "*secret, has a default*" in page


def test_ansible_markup_becomes_markdown() -> None:
    assert role_docs._text(["Use C(docker) with O(nanoclaw_x) and V(true)."]) == "Use `docker` with `nanoclaw_x` and `true`."
