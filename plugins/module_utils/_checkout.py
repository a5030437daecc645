# Copyright: nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check out NanoClaw at a pinned commit without touching what the running host owns.

Upstream tracks files under ``groups/`` and the running host changes them (v1 agents write their
memory into ``groups/*/CLAUDE.md``; v2's start-up migration renames and deletes them), so a real
checkout is never clean once NanoClaw has run. Those changes are user data. This engine tells them
from code edits by path (``runtime_paths``, see ``_upstream.RUNTIME_PATHS``):

- a code edit (a tracked file outside the runtime paths) or a local commit on no remote branch
  makes it refuse, unless ``force`` (which discards code edits only);
- whatever is under the runtime paths is carried over a commit change exactly as it was: every
  path tracked under them by the old or the new commit keeps its content, mode and existence
  (a file the host deleted stays deleted), and a runtime path that is a symlink stays that symlink;
- the set aside files are moved (not copied) into ``.git/nanoclaw-provision/`` with a journal
  first, so an interrupted run is repaired by the next one before it does anything else.

Credentials in the repository URL never reach argv or ``.git/config``: the remote is stored
without them and git gets them through ``GIT_CONFIG_*`` environment variables (``insteadOf``).
Plain functions and subprocess, no Ansible imports, so unit tests drive real git.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

STATE_DIR = os.path.join(".git", "nanoclaw-provision")
JOURNAL = "journal.json"
BACKUP = "runtime-backup"
PIN_REF = "refs/nanoclaw-provision/pinned"

_URL_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@]+)@(?P<rest>.+)$")


class CheckoutError(Exception):
    """A refusal or failure; ``failure`` says which, the message says why (credentials redacted)."""

    def __init__(self, failure: str, msg: str, **details) -> None:
        super().__init__(msg)
        self.failure = failure
        self.details = details


def redact(text: str) -> str:
    """Hide the user-info part of every URL in ``text``."""
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@", r"\1***@", text or "")


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """(URL without credentials, environment that makes git use them).

    http(s) user-info is always a credential (a token as user name is common); for other schemes
    only a user:password pair is (``ssh://git@host/...`` names the account and stays)."""
    match = _URL_CREDENTIALS.match(url)
    if not match:
        return url, {}
    scheme, userinfo, rest = match.group("scheme"), match.group("userinfo"), match.group("rest")
    if not scheme.lower().startswith("http") and ":" not in userinfo:
        return url, {}
    host = rest.split("/", 1)[0]
    env = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{scheme}{userinfo}@{host}/.insteadOf",
        "GIT_CONFIG_VALUE_0": f"{scheme}{host}/",
    }
    return scheme + rest, env


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


class Checkout:
    """One project root and the git that manages it."""

    def __init__(self, dest: str, runtime_paths: list[str], timeout: float = 600.0, env: dict[str, str] | None = None):
        self.dest = dest
        self.roots = [p.strip("/") for p in runtime_paths if p.strip("/")]
        self.timeout = timeout
        self.env = dict(os.environ)
        self.env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
        self.env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new")
        self.env.update(env or {})
        self.state = os.path.join(dest, STATE_DIR)
        self.commands: list[list[str]] = []  # every argv run, for the caller's record

    # ------------------------------------------------------------------ git
    def git(
        self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None, timeout: float | None = None
    ) -> tuple[int, str, str]:
        argv = ["git", "-C", self.dest, *args]
        self.commands.append(argv)
        env = dict(self.env)
        env.update(extra_env or {})
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout or self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CheckoutError("timeout", f"git {args[0]} did not finish within {timeout or self.timeout:.0f} s") from None
        if check and proc.returncode != 0:
            raise CheckoutError("git_error", "git {} failed: {}".format(" ".join(args[:2]), redact(proc.stderr.strip())))
        return proc.returncode, proc.stdout, proc.stderr

    def out(self, *args: str) -> str:
        """stdout of a git command that must succeed."""
        return self.git(*args)[1]

    def ok(self, *args: str) -> bool:
        """Whether a git command succeeds."""
        return self.git(*args, check=False)[0] == 0

    @property
    def is_repo(self) -> bool:
        return os.path.isdir(os.path.join(self.dest, ".git"))

    def head(self) -> str:
        if not self.is_repo:
            return ""
        rc, out, _err = self.git("rev-parse", "--verify", "-q", "HEAD", check=False)
        return out.strip() if rc == 0 else ""

    def has_commit(self, rev: str) -> bool:
        return self.ok("cat-file", "-e", rev + "^{commit}")

    def tracked(self, rev: str) -> list[str]:
        """Files ``rev`` tracks under the runtime paths."""
        if not rev or not self.roots:
            return []
        out = self.out("ls-tree", "-r", "-z", "--name-only", rev, "--", *self.roots)
        return [p for p in out.split("\0") if p]

    # ------------------------------------------------------------------ inspect
    def inspect(self) -> dict:
        """HEAD, local changes split into code edits and runtime data, and local commits."""
        info = {
            "exists": os.path.isdir(self.dest),
            "is_repo": self.is_repo,
            "head": "",
            "code_changes": [],
            "runtime_changes": [],
            "unpushed": [],
        }
        if not info["is_repo"]:
            return info
        info["head"] = self.head()
        out = self.out("status", "--porcelain=v1", "-z", "--untracked-files=no")
        entries = out.split("\0")
        i = 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            if not entry:
                continue
            code, path = entry[:2], entry[3:]
            if code[0] in "RC":  # a rename or copy carries its source path in the next field
                i += 1
            (info["runtime_changes"] if _under(path, self.roots) else info["code_changes"]).append(f"{code.strip()} {path}")
        if info["head"]:
            exclude = [PIN_REF] if self.git("rev-parse", "-q", "--verify", PIN_REF, check=False)[0] == 0 else []
            out = self.out("log", "--format=%h %s", "HEAD", "--branches", "--not", "--remotes", *exclude)
            info["unpushed"] = [line for line in out.splitlines() if line.strip()]
        return info

    def foreign_entries(self) -> list[str]:
        """Entries of a project root without .git that are not NanoClaw's runtime data."""
        if not os.path.isdir(self.dest):
            return []
        return sorted(e for e in os.listdir(self.dest) if not _under(e, self.roots))

    # ------------------------------------------------------------------ carry runtime data over
    def _units(self, old: str, new: str) -> list[tuple[str, bool]]:
        """(path, tracked by old) for every path to carry over: per file, or a whole symlinked root."""
        linked = [r for r in self.roots if os.path.islink(os.path.join(self.dest, r))]
        units: dict[str, bool] = {r: True for r in linked}
        old_files = set(self.tracked(old))
        for path in sorted(old_files | set(self.tracked(new))):
            if not _under(path, linked):
                units[path] = path in old_files
        return sorted(units.items())

    def _set_aside(self, units: list[tuple[str, bool]]) -> dict:
        journal = {"kept": [], "absent": [], "dirs": []}
        backup = os.path.join(self.state, BACKUP)
        for path, tracked_by_old in units:
            full = os.path.join(self.dest, path)
            if os.path.lexists(full) and (os.path.islink(full) or not os.path.isdir(full)):
                journal["kept"].append(path)
            elif tracked_by_old and not os.path.lexists(full):
                journal["absent"].append(path)
            parent = os.path.dirname(path)
            while parent:
                if os.path.isdir(os.path.join(self.dest, parent)) and parent not in journal["dirs"]:
                    journal["dirs"].append(parent)
                parent = os.path.dirname(parent)
        os.makedirs(backup, mode=0o700, exist_ok=True)
        self._write_journal(journal)
        for path in journal["kept"]:
            target = os.path.join(backup, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(os.path.join(self.dest, path), target)
        return journal

    def _write_journal(self, journal: dict) -> None:
        tmp = os.path.join(self.state, JOURNAL + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(journal, fh)
        os.replace(tmp, os.path.join(self.state, JOURNAL))

    @staticmethod
    def _remove(full: str) -> None:
        if os.path.islink(full) or os.path.isfile(full):
            os.unlink(full)
        elif os.path.isdir(full):
            shutil.rmtree(full)

    def restore(self) -> list[str]:
        """Put the set aside runtime data back (also repairs an interrupted run); returns the paths."""
        journal_path = os.path.join(self.state, JOURNAL)
        if not os.path.exists(journal_path):
            return []
        with open(journal_path) as fh:
            journal = json.load(fh)
        backup = os.path.join(self.state, BACKUP)
        for path in journal["kept"]:
            saved = os.path.join(backup, path)
            if not os.path.lexists(saved):
                continue  # already back (an interrupted restore got this far)
            full = os.path.join(self.dest, path)
            if os.path.lexists(full):
                self._remove(full)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            os.rename(saved, full)
        for path in journal["absent"]:
            full = os.path.join(self.dest, path)
            if os.path.lexists(full):
                self._remove(full)
            parent = os.path.dirname(path)
            # Directories the checkout made only for files the host had removed go again.
            while parent and parent not in journal["dirs"]:
                full_parent = os.path.join(self.dest, parent)
                if os.path.isdir(full_parent) and not os.listdir(full_parent):
                    os.rmdir(full_parent)
                parent = os.path.dirname(parent)
        shutil.rmtree(backup, ignore_errors=True)
        os.unlink(journal_path)
        return sorted(journal["kept"] + journal["absent"])

    # ------------------------------------------------------------------ the operation
    def ensure(  # noqa: PLR0917 - the module's options, in its order
        self, repo_url: str, version: str, force: bool = False, depth: int = 0, reference: str = "", check_mode: bool = False
    ) -> dict:
        """Make HEAD ``version`` (detached), carrying the runtime data over; see the module docs."""
        plain_url, cred_env = split_credentials(repo_url)
        result = {"changed": False, "before": "", "after": "", "cloned": False, "kept": [], "repaired": []}
        if self.is_repo and not check_mode:
            result["repaired"] = self.restore()
        info = self.inspect()
        result.update(
            before=info["head"], code_changes=info["code_changes"], runtime_changes=info["runtime_changes"], unpushed=info["unpushed"]
        )
        if not info["is_repo"]:
            foreign = self.foreign_entries()
            if foreign:
                raise CheckoutError(
                    "not_a_checkout",
                    f"{self.dest} exists and is not a git checkout; it holds {', '.join(foreign[:10])}{' ...' if len(foreign) > 10 else ''}"
                    f" besides NanoClaw's runtime data ({', '.join(self.roots)}): refusing to use it",
                    foreign=foreign,
                )
        elif (info["code_changes"] or info["unpushed"]) and not force:
            parts = []
            if info["code_changes"]:
                edits = ", ".join(info["code_changes"])
                parts.append(f"{len(info['code_changes'])} locally modified file(s) outside NanoClaw's runtime data: {edits}")
            if info["unpushed"]:
                parts.append(f"{len(info['unpushed'])} local commit(s) on no remote branch: {', '.join(info['unpushed'])}")
            raise CheckoutError("dirty", "; ".join(parts))

        remote_ok = True
        if info["is_repo"]:
            rc, out, _err = self.git("remote", "get-url", "origin", check=False)
            remote_ok = rc == 0 and out.strip() == plain_url
        needs_checkout = info["head"] != version or (force and bool(info["code_changes"]))
        if not needs_checkout and remote_ok:
            result["after"] = info["head"]
            return result
        result["changed"] = True
        if check_mode:
            result["after"] = version
            result["cloned"] = not info["is_repo"]
            return result

        if not info["is_repo"]:
            os.makedirs(self.dest, exist_ok=True)
            self.git("init", "-q")
            self.git("remote", "add", "origin", plain_url)
            if reference:
                objects = (
                    os.path.join(reference, ".git", "objects")
                    if os.path.isdir(os.path.join(reference, ".git"))
                    else os.path.join(reference, "objects")
                )
                with open(os.path.join(self.dest, ".git", "objects", "info", "alternates"), "a") as fh:
                    fh.write(objects + "\n")
            result["cloned"] = True
        elif not remote_ok:
            if self.git("remote", "get-url", "origin", check=False)[0] == 0:
                self.git("remote", "set-url", "origin", plain_url)
            else:
                self.git("remote", "add", "origin", plain_url)

        if not self.has_commit(version):
            shallow = ["--depth", str(depth)] if depth > 0 else []
            rc, _out, err = self.git(
                "fetch", "-q", "--tags", *shallow, "origin", "+refs/heads/*:refs/remotes/origin/*", check=False, extra_env=cred_env
            )
            if rc != 0:
                # ``error`` without the URL: the module masks every copy of repo_url (no_log), so the
                # role names the URL itself (roles/nanoclaw/tasks/source.yml).
                error = redact(err.strip())
                raise CheckoutError("unreachable", f"cannot reach {redact(repo_url)}: {error}", error=error)
            if not self.has_commit(version):
                # A commit on no branch head: servers that allow it hand it out by id.
                self.git("fetch", "-q", *shallow, "origin", version, check=False, extra_env=cred_env)
            if not self.has_commit(version):
                raise CheckoutError("unknown_commit", f"{version} is not a commit of {redact(repo_url)}")

        if info["head"] != version or force:
            os.makedirs(self.state, mode=0o700, exist_ok=True)
            self._set_aside(self._units(info["head"], version))
            try:
                self.git("checkout", "-q", "-f", "--detach", version)
            finally:
                result["kept"] = self.restore()
        self.git("update-ref", PIN_REF, version)
        result["after"] = self.head()
        if result["after"] != version:
            raise CheckoutError("git_error", "HEAD is {} after checking out {}".format(result["after"], version))
        return result

    def sources(self, rev: str, prefix: str = "src/", suffix: str = ".ts") -> dict[str, str]:
        """Text of the files under ``prefix`` ending in ``suffix`` at ``rev`` (one git cat-file)."""
        if not rev or not self.is_repo or not self.has_commit(rev):
            return {}
        out = self.out("ls-tree", "-r", "-z", "--name-only", rev, "--", prefix)
        paths = [p for p in out.split("\0") if p.endswith(suffix)]
        if not paths:
            return {}
        argv = ["git", "-C", self.dest, "cat-file", "--batch"]
        self.commands.append(argv)
        data = subprocess.run(
            argv,
            input="".join(f"{rev}:{p}\n" for p in paths).encode(),
            capture_output=True,
            env=self.env,
            timeout=self.timeout,
            check=True,
        ).stdout
        texts, pos = {}, 0
        for path in paths:
            header_end = data.index(b"\n", pos)
            size = int(data[pos:header_end].split()[2])
            texts[path] = data[header_end + 1 : header_end + 1 + size].decode("utf-8", "replace")
            pos = header_end + 1 + size + 1
        return texts

    def package(self, rev: str = "") -> dict:
        """name, version, packageManager and engines of package.json in the worktree, or at ``rev``
        when given and present ({} when there is none)."""
        try:
            if rev:
                if not self.is_repo or not self.has_commit(rev):
                    return {}
                text = self.git("show", rev + ":package.json")[1]
            else:
                with open(os.path.join(self.dest, "package.json")) as fh:
                    text = fh.read()
            data = json.loads(text)
        except (OSError, ValueError, CheckoutError):
            return {}
        return {k: data[k] for k in ("name", "version", "packageManager", "engines") if k in data}
