"""The checkout engine (module_utils/_checkout.py) with real git on real temporary repositories.

The repositories are FIXTURES shaped like upstream at the two pins where it matters here:
upstream TRACKS ``groups/main/CLAUDE.md`` and ``groups/global/CLAUDE.md`` (v1.2.53 and v2.0.64
``.gitignore``: ``groups/*`` ignored except those files), ignores ``data/ store/ logs/ .env``,
and the running host changes the tracked files (v1 agents write memory into them; v2's
``migrateGroupsToClaudeLocal`` in ``src/claude-md-compose.ts`` renames main's and deletes
``groups/global/``). ``test_upstream.py`` repeats the central case on the real source.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.nanoclaw.provision.plugins.module_utils._checkout import (
    JOURNAL,
    STATE_DIR,
    Checkout,
    CheckoutError,
    redact,
    split_credentials,
)

RUNTIME = ["groups", "data", "store", "logs", ".env"]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True, env=env).stdout.strip()


def commit(work: Path, files: dict[str, str | None], message: str) -> str:
    for name, content in files.items():
        path = work / name
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> dict:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    first = commit(
        work,
        {
            ".gitignore": "node_modules/\ndist/\nstore/\ndata/\nlogs/\n.env\ngroups/*\n!groups/main/\n!groups/global/\n",
            "package.json": json.dumps({"name": "nanoclaw", "version": "1.2.53"}),
            "src/index.ts": "v1\n",
            "groups/main/CLAUDE.md": "upstream main template v1\n",
            "groups/global/CLAUDE.md": "upstream global template v1\n",
        },
        "v1",
    )
    second = commit(
        work,
        {
            "package.json": json.dumps({"name": "nanoclaw", "version": "2.0.64", "packageManager": "pnpm@10.33.0"}),
            "src/index.ts": "v2\n",
            "groups/main/CLAUDE.md": "upstream main template v2\n",
            "groups/global/CLAUDE.md": "upstream global template v2\n",
            "groups/main/NEW.md": "added by v2\n",
        },
        "v2",
    )
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return {"url": f"file://{bare}", "first": first, "second": second, "bare": bare}


def host_ran(root: Path) -> None:
    """What a running host does: agent memory into a tracked file, a deleted tracked file, data."""
    (root / "groups/main/CLAUDE.md").write_text("agent memory: the user likes tea\n")
    (root / "groups/global/CLAUDE.md").unlink()
    (root / "groups/global").rmdir()
    (root / "data").mkdir()
    (root / "data/messages.db").write_bytes(os.urandom(4096))
    (root / "groups/family").mkdir()
    (root / "groups/family/notes.txt").write_text("family notes\n")
    (root / ".env").write_text('ASSISTANT_NAME="Andy"\n')
    os.chmod(root / ".env", 0o600)


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for top in RUNTIME:
        base = root / top
        paths = [base] if base.is_file() or base.is_symlink() else sorted(base.rglob("*")) if base.exists() else []
        for p in paths:
            if p.is_symlink():
                out[str(p.relative_to(root))] = ("link", os.readlink(p))
            elif p.is_file():
                st = p.stat()
                out[str(p.relative_to(root))] = (p.read_bytes(), st.st_mode, st.st_mtime_ns)
            else:
                out[str(p.relative_to(root))] = ("dir",)
    return out


def test_first_checkout_clones_and_pins(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    result = Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    assert result["changed"]
    assert result["cloned"]
    assert result["before"] == ""
    assert result["after"] == origin["first"]
    assert git(root, "rev-parse", "HEAD") == origin["first"]
    assert (root / "groups/main/CLAUDE.md").read_text() == "upstream main template v1\n"
    again = Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    assert not again["changed"]
    assert again["after"] == origin["first"]


def test_rerun_after_the_host_ran_is_no_change_and_no_refusal(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    host_ran(root)
    before = snapshot(root)
    result = Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    assert not result["changed"]
    assert result["code_changes"] == []
    assert sorted(result["runtime_changes"]) == ["D groups/global/CLAUDE.md", "M groups/main/CLAUDE.md"]
    assert snapshot(root) == before


def test_pin_change_carries_runtime_data_over_exactly(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    host_ran(root)
    before = snapshot(root)
    result = Checkout(str(root), RUNTIME).ensure(origin["url"], origin["second"])
    assert result["changed"]
    assert result["after"] == origin["second"] == git(root, "rev-parse", "HEAD")
    assert (root / "src/index.ts").read_text() == "v2\n"  # code moved on
    after = snapshot(root)
    # Everything the host had is there as it was (content, mode, mtime); the deleted file and its
    # directory are still gone; only a file the new pin adds and the host never had appeared.
    assert {k: v for k, v in after.items() if k != "groups/main/NEW.md"} == before
    assert after["groups/main/NEW.md"][0] == b"added by v2\n"
    assert not (root / "groups/global").exists()
    assert "groups/main/CLAUDE.md" in result["kept"]
    assert "groups/global/CLAUDE.md" in result["kept"]
    assert not (root / STATE_DIR / JOURNAL).exists()
    # And back (a rollback takes the same path).
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    assert (root / "groups/main/CLAUDE.md").read_text() == "agent memory: the user likes tea\n"


def test_code_edit_is_refused_and_nothing_changes(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    host_ran(root)
    (root / "src/index.ts").write_text("my local patch\n")
    before = snapshot(root)
    with pytest.raises(CheckoutError) as err:
        Checkout(str(root), RUNTIME).ensure(origin["url"], origin["second"])
    assert err.value.failure == "dirty"
    assert "1 locally modified file(s) outside NanoClaw's runtime data: M src/index.ts" in str(err.value)
    assert "groups" not in str(err.value)
    assert git(root, "rev-parse", "HEAD") == origin["first"]
    assert (root / "src/index.ts").read_text() == "my local patch\n"
    assert snapshot(root) == before


def test_force_discards_code_edits_but_never_runtime_data(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    host_ran(root)
    (root / "src/index.ts").write_text("my local patch\n")
    before = snapshot(root)
    result = Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"], force=True)
    assert result["changed"]
    assert (root / "src/index.ts").read_text() == "v1\n"
    assert snapshot(root) == before


def test_local_commit_is_refused(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    git(root, "switch", "-q", "-c", "mine")
    local = commit(root, {"src/index.ts": "a channel skill\n"}, "add a channel")
    with pytest.raises(CheckoutError) as err:
        Checkout(str(root), RUNTIME).ensure(origin["url"], origin["second"])
    assert err.value.failure == "dirty"
    assert "1 local commit(s) on no remote branch: " + local[:7] in str(err.value)


def test_reinstall_into_kept_runtime_data_and_refusal_of_a_foreign_directory(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    root.mkdir()
    (root / "data").mkdir()
    (root / "data/messages.db").write_bytes(b"kept by an uninstall")
    (root / "groups/main").mkdir(parents=True)
    (root / "groups/main/CLAUDE.md").write_text("memory kept by an uninstall\n")
    result = Checkout(str(root), RUNTIME).ensure(origin["url"], origin["second"])
    assert result["cloned"]
    assert git(root, "rev-parse", "HEAD") == origin["second"]
    assert (root / "groups/main/CLAUDE.md").read_text() == "memory kept by an uninstall\n"
    assert (root / "data/messages.db").read_bytes() == b"kept by an uninstall"

    home = tmp_path / "home"
    home.mkdir()
    (home / ".ssh").mkdir()
    with pytest.raises(CheckoutError) as err:
        Checkout(str(home), RUNTIME).ensure(origin["url"], origin["second"])
    assert err.value.failure == "not_a_checkout"
    assert ".ssh" in str(err.value)
    assert sorted(os.listdir(home)) == [".ssh"]


def test_symlinked_runtime_directory_stays_a_symlink(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    elsewhere = tmp_path / "disk" / "groups"
    (root / "groups").rename(elsewhere.parent.mkdir() or elsewhere)
    (root / "groups").symlink_to(elsewhere)
    (elsewhere / "main/CLAUDE.md").write_text("memory on another disk\n")
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["second"])
    assert (root / "groups").is_symlink()
    assert os.readlink(root / "groups") == str(elsewhere)
    assert (elsewhere / "main/CLAUDE.md").read_text() == "memory on another disk\n"
    assert not (elsewhere / "main/NEW.md").exists()


def test_an_interrupted_run_is_repaired_first(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    host_ran(root)
    # The state a run leaves when it dies between setting the data aside and putting it back.
    state = root / STATE_DIR
    (state / "runtime-backup/groups/main").mkdir(parents=True)
    (root / "groups/main/CLAUDE.md").rename(state / "runtime-backup/groups/main/CLAUDE.md")
    (root / "groups/main/CLAUDE.md").write_text("upstream main template v1\n")
    (state / JOURNAL).write_text(json.dumps({"kept": ["groups/main/CLAUDE.md"], "absent": [], "dirs": ["groups", "groups/main"]}))
    result = Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    assert result["repaired"] == ["groups/main/CLAUDE.md"]
    assert (root / "groups/main/CLAUDE.md").read_text() == "agent memory: the user likes tea\n"


def test_check_mode_changes_nothing(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    result = Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"], check_mode=True)
    assert result["changed"]
    assert result["cloned"]
    assert not root.exists()
    Checkout(str(root), RUNTIME).ensure(origin["url"], origin["first"])
    host_ran(root)
    before = snapshot(root)
    checkout = Checkout(str(root), RUNTIME)
    result = checkout.ensure(origin["url"], origin["second"], check_mode=True)
    assert result["changed"]
    assert git(root, "rev-parse", "HEAD") == origin["first"]
    assert snapshot(root) == before
    # The pin's package.json is read from git when the commit is already there.
    assert checkout.package(origin["first"])["version"] == "1.2.53"


def test_unknown_commit_and_unreachable_repository(tmp_path, origin):
    root = tmp_path / "nanoclaw"
    with pytest.raises(CheckoutError) as err:
        Checkout(str(root), RUNTIME).ensure(origin["url"], "0" * 40)
    assert err.value.failure == "unknown_commit"
    with pytest.raises(CheckoutError) as err:
        Checkout(str(tmp_path / "other"), RUNTIME).ensure(f"file://{tmp_path}/nowhere.git", origin["first"])
    assert err.value.failure == "unreachable"
    assert "nowhere.git" in str(err.value)
    # git's words on their own, for callers of a module that masks the URL (no_log).
    assert err.value.details["error"]
    assert err.value.details["error"] in str(err.value)


def test_credentials_never_reach_argv_or_git_config(tmp_path):
    secret = "tok-" + os.urandom(8).hex()
    url = f"https://ci-bot:{secret}@127.0.0.1:9/org/nanoclaw.git"
    plain, env = split_credentials(url)
    assert plain == "https://127.0.0.1:9/org/nanoclaw.git"
    assert secret in env["GIT_CONFIG_KEY_0"]
    assert split_credentials("ssh://git@example.org/org/nanoclaw.git") == ("ssh://git@example.org/org/nanoclaw.git", {})
    root = tmp_path / "nanoclaw"
    checkout = Checkout(str(root), RUNTIME, timeout=30)
    with pytest.raises(CheckoutError) as err:
        checkout.ensure(url, "a" * 40)
    assert err.value.failure == "unreachable"
    assert secret not in str(err.value)
    assert secret not in err.value.details["error"]
    assert "***@" in str(err.value)
    assert all(secret not in arg for argv in checkout.commands for arg in argv)
    assert secret not in (root / ".git/config").read_text()
    assert "url = https://127.0.0.1:9/org/nanoclaw.git" in (root / ".git/config").read_text()
    assert redact(f"fatal: https://u:{secret}@h/x") == "fatal: https://***@h/x"
