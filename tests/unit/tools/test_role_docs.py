"""docs/roles/*.md and roles/*/README.md are generated from the roles' argument specs; the committed
pages must not drift."""

from __future__ import annotations

import pytest

from tools import role_docs


def test_committed_role_pages_match_the_argument_specs() -> None:
    assert role_docs.main(["--check"]) == 0, "run: python3 -m tools.role_docs"


def test_every_role_has_a_page_and_a_readme_listing_every_option() -> None:
    specs = list(role_docs.REPO.glob("roles/*/meta/argument_specs.yml"))
    roles = {p.name for p in role_docs.REPO.glob("roles/*") if p.is_dir()}
    assert {p.parents[1].name for p in specs} == roles, "every role needs meta/argument_specs.yml (its README is made from it)"
    pages = role_docs.pages()
    readmes = role_docs.readmes()
    for spec_file in specs:
        role = spec_file.parents[1].name
        options = role_docs.yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]["options"]
        for name in options:
            assert f"| `{name}` |" in pages[f"{role}.md"], f"{name} missing from docs/roles/{role}.md"
            assert f"| `{name}` |" in readmes[role], f"{name} missing from roles/{role}/README.md"
        assert (role_docs.REPO / "roles" / role / "README.md").read_text() == readmes[role]


def test_readme_links_resolve_from_the_role_directory() -> None:
    text = role_docs.readmes()["preflight"]
    for target in ("defaults/main.yml", "../../README.md", "../../docs/"):
        assert f"]({target})" in text
        assert (role_docs.REPO / "roles" / "preflight" / target).exists()


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
    assert role_docs._text("Set E(KUBECONFIG) or E(A=b), O(nanoclaw_x=3), M(ansible.builtin.apt).") == (
        "Set `KUBECONFIG` or `A=b`, `nanoclaw_x=3`, `ansible.builtin.apt`."
    )
    assert role_docs._text("I(it) B(bold) L(the docs,https://example.org/a) U(https://example.org)") == (
        "*it* **bold** [the docs](<https://example.org/a>) <https://example.org>"
    )
    # Markdown syntax in plain text stays text.
    assert role_docs._text("C(x) and a*b [c]") == r"`x` and a\*b \[c\]"


def test_no_markup_is_left_in_the_generated_pages() -> None:
    markup = role_docs.re.compile(r"\b[CVOIBLUEMP]\([^)]")
    for name, text in [*role_docs.pages().items(), *role_docs.readmes().items()]:
        assert not markup.search(text), f"{name}: {markup.search(text)}"


def test_bad_markup_fails_the_generator() -> None:
    with pytest.raises(Exception, match="C"):
        role_docs._text("C(unclosed")
