"""NanoClaw's mount allowlist rules (module_utils/_allowlist.py) on a real temporary filesystem."""

from __future__ import annotations

import json

import pytest

from ansible_collections.nanoclaw.provision.plugins.module_utils._allowlist import (
    BUILTIN_BLOCKED_PATTERNS,
    AllowlistError,
    blocked_by,
    build_document,
    check_container_path,
    check_mount,
    expand_home,
    merged_patterns,
    render,
    resolve_root,
)

PATTERNS = merged_patterns([".vault"])


def test_builtin_patterns_are_nanoclaws_list_and_come_first():
    assert BUILTIN_BLOCKED_PATTERNS == (
        ".ssh", ".gnupg", ".gpg", ".aws", ".azure", ".gcloud", ".kube", ".docker", "credentials",
        ".env", ".netrc", ".npmrc", ".pypirc", "id_rsa", "id_ed25519", "private_key", ".secret",
    )  # fmt: skip
    assert merged_patterns([".vault", ".ssh", ""]) == [*BUILTIN_BLOCKED_PATTERNS, ".vault"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/u/.ssh", ".ssh"),
        ("/home/u/.ssh/keys", ".ssh"),
        ("/home/u/my.ssh.backup", ".ssh"),  # substring of a component
        ("/srv/aws-credentials-2024/x", "credentials"),
        ("/home/u/project/.env.local", ".env"),
        ("/srv/team.vault", ".vault"),
        ("/home/u/projects", None),
        ("/home/u/sshfiles", None),  # no dot: not the .ssh pattern
    ],
)
def test_blocked_by_matches_substrings_of_components(path, expected):
    assert blocked_by(path, PATTERNS) == expected


def test_expand_home():
    assert expand_home("~", "/home/u") == "/home/u"
    assert expand_home("~/p", "/home/u") == "/home/u/p"
    assert expand_home("/abs", "/home/u") == "/abs"
    assert expand_home("~other/p", "/home/u") == "~other/p"


@pytest.mark.parametrize(
    ("container_path", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/abs", "must be relative"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("a:b", "':'"),
        # anywhere, not only as a component: upstream's check is includes('..') (src/mount-security.ts)
        ("a..b", "'..'"),
        ("x/..hidden", "'..'"),
    ],
)
def test_bad_container_paths_are_refused(container_path, message):
    with pytest.raises(AllowlistError, match=message):
        check_container_path(container_path, "mounts[0].container_path")


@pytest.mark.parametrize("container_path", ["work", "a/b", "a.b", "x/.hidden"])
def test_good_container_paths_pass(container_path):
    check_container_path(container_path, "label")


def test_existing_root_resolves_through_symlinks(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    resolved, exists = resolve_root({"path": str(tmp_path / "link")}, 0, str(tmp_path), PATTERNS)
    assert (resolved, exists) == (str(real), True)


def test_home_relative_root(tmp_path):
    (tmp_path / "projects").mkdir()
    assert resolve_root({"path": "~/projects"}, 0, str(tmp_path), PATTERNS) == (str(tmp_path / "projects"), True)


def test_symlink_into_a_blocked_directory_is_refused(tmp_path):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / "innocent").symlink_to(tmp_path / ".ssh")
    with pytest.raises(AllowlistError, match=r"allowed_roots\[2\]\.path: .*resolves to .*blocked pattern '\.ssh'"):
        resolve_root({"path": str(tmp_path / "innocent")}, 2, str(tmp_path), PATTERNS)


def test_missing_root_is_refused_unless_create(tmp_path):
    with pytest.raises(AllowlistError, match="does not exist"):
        resolve_root({"path": str(tmp_path / "nope")}, 0, str(tmp_path), PATTERNS)
    assert resolve_root({"path": str(tmp_path / "nope"), "create": True}, 0, str(tmp_path), PATTERNS) == (
        str(tmp_path / "nope"),
        False,
    )


def test_relative_root_and_file_root_are_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(AllowlistError, match="must be absolute"):
        resolve_root({"path": "projects"}, 0, str(tmp_path), PATTERNS)
    with pytest.raises(AllowlistError, match="not a directory"):
        resolve_root({"path": str(tmp_path / "f")}, 0, str(tmp_path), PATTERNS)


def test_document_shape_is_nanoclaws_schema():
    doc = build_document(
        [
            {"realpath": "/a", "allow_read_write": True, "description": "A"},
            {"realpath": "/b", "allow_read_write": False, "description": None},
        ],
        [".vault"],
        False,
    )
    assert doc == {
        "allowedRoots": [{"path": "/a", "allowReadWrite": True, "description": "A"}, {"path": "/b", "allowReadWrite": False}],
        "blockedPatterns": [".vault"],
        "nonMainReadOnly": False,
    }
    assert json.loads(render(doc)) == doc
    assert render(doc).endswith("}\n")


def test_mounts_are_checked_against_roots(tmp_path):
    (tmp_path / "rw" / "site").mkdir(parents=True)
    (tmp_path / "ro" / "docs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    doc = build_document(
        [{"realpath": str(tmp_path / "rw"), "allow_read_write": True}, {"realpath": str(tmp_path / "ro")}],
        [],
        True,
    )
    home = str(tmp_path)
    ok = check_mount({"host_path": "~/rw/site", "container_path": "site", "read_write": True}, 0, doc, home, PATTERNS)
    assert ok == {"host_path": str(tmp_path / "rw" / "site"), "container_path": "site", "read_write": True}
    # read-write requested under a read-only root: mounted read-only, as NanoClaw does
    ro = check_mount({"host_path": str(tmp_path / "ro" / "docs"), "container_path": "docs", "read_write": True}, 1, doc, home, PATTERNS)
    assert ro["read_write"] is False
    with pytest.raises(AllowlistError, match=r"mounts\[2\]\.host_path: .*under no allowed root"):
        check_mount({"host_path": str(tmp_path / "elsewhere"), "container_path": "e"}, 2, doc, home, PATTERNS)
    with pytest.raises(AllowlistError, match="does not exist"):
        check_mount({"host_path": str(tmp_path / "rw" / "nope"), "container_path": "n"}, 3, doc, home, PATTERNS)
    with pytest.raises(AllowlistError, match=r"mounts\[4\]\.container_path: .*'\.\.'"):
        check_mount({"host_path": str(tmp_path / "rw" / "site"), "container_path": "../x"}, 4, doc, home, PATTERNS)


def test_mount_prefix_is_not_confused_with_a_sibling(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "rootkit").mkdir()
    doc = build_document([{"realpath": str(tmp_path / "root"), "allow_read_write": True}], [], True)
    with pytest.raises(AllowlistError, match="under no allowed root"):
        check_mount({"host_path": str(tmp_path / "rootkit"), "container_path": "k"}, 0, doc, str(tmp_path), PATTERNS)


# ------------------------------------------------------------------ roots that defeat the allowlist
def _home(tmp_path):
    home = tmp_path / "home" / "u"
    for sub in ("projects", ".config/systemd/user", "nanoclaw/src", "nanoclaw-data"):
        (home / sub).mkdir(parents=True)
    return home


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("/", "is or contains the home"),
        ("~", "is or contains the home"),
        ("~/", "is or contains the home"),
        ("{tmp}/home", "is or contains the home"),
        ("~/.config", "overlaps .*/home/u/.config"),
        ("~/.config/systemd", "overlaps .*/home/u/.config"),
        ("~/nanoclaw", "overlaps .*/home/u/nanoclaw, the NanoClaw project root"),
        ("~/nanoclaw/src", "overlaps .*/home/u/nanoclaw, the NanoClaw project root"),
        ("~/link-to-home", r"\(it resolves to .*/home/u'\) is or contains the home"),
    ],
)
def test_roots_that_are_or_contain_home_project_or_config_are_refused(tmp_path, root, message):
    home = _home(tmp_path)
    (home / "link-to-home").symlink_to(home)
    entry = {"path": root.replace("{tmp}", str(tmp_path)), "allow_read_write": True}
    with pytest.raises(AllowlistError, match=r"allowed_roots\[0\]\.path: .*" + message):
        resolve_root(entry, 0, str(home), PATTERNS, project_root=str(home / "nanoclaw"))


@pytest.mark.parametrize("root", ["~/projects", "~/nanoclaw-data"])
def test_roots_inside_the_home_beside_project_and_config_pass(tmp_path, root):
    home = _home(tmp_path)
    real, exists = resolve_root({"path": root}, 0, str(home), PATTERNS, project_root=str(home / "nanoclaw"))
    assert (real, exists) == (str(home / root[2:]), True)


def test_colon_in_host_paths_is_refused(tmp_path):
    home = _home(tmp_path)
    (home / "a:b").mkdir()
    with pytest.raises(AllowlistError, match=r"allowed_roots\[0\]\.path: .*must not contain ':'"):
        resolve_root({"path": "~/a:b"}, 0, str(home), PATTERNS)
    # ... also when only the symlink's target has one
    (home / "plain").symlink_to(home / "a:b")
    with pytest.raises(AllowlistError, match="must not contain ':'"):
        resolve_root({"path": "~/plain"}, 0, str(home), PATTERNS)
    doc = build_document([{"realpath": str(home), "allow_read_write": True}], [], True)
    with pytest.raises(AllowlistError, match=r"mounts\[0\]\.host_path: .*must not contain ':'"):
        check_mount({"host_path": "~/a:b", "container_path": "x"}, 0, doc, str(home), PATTERNS)
