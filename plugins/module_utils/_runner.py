# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a container CLI as another user, with a deadline, timings and streamed output.

The modules run as root (or as the user itself) and drive ``docker`` (or
whatever ``docker`` resolves to: Docker, rootless Docker, the podman-docker
shim) the way the NanoClaw host process would: as the service user, with that
user's HOME, PATH and XDG_RUNTIME_DIR. Nothing here puts data on a command line
that the caller did not put there: secrets travel on stdin only.
"""

from __future__ import annotations

import codecs
import os
import pwd
import selectors
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# What a Debian/Ubuntu login shell gives a user (~/.profile adds ~/bin and ~/.local/bin).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_LIMIT = 1024 * 1024


class RunnerError(Exception):
    """The command could not be started at all (unknown user, executable not found)."""


@dataclass(frozen=True)
class Account:
    """The user a command runs as."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...] = ()

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def current_account() -> Account:
    entry = pwd.getpwuid(os.geteuid())
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, tuple(os.getgroups()))


def resolve_account(name: str | None) -> Account:
    """The account called ``name`` (None: the current one)."""
    if not name:
        return current_account()
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise RunnerError(f"user {name!r} does not exist on this host") from exc
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)


def user_environment(account: Account, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A login-like environment for ``account``; ``extra`` wins (DOCKER_HOST, PATH, ...)."""
    path = [os.path.join(account.home, ".local", "bin"), os.path.join(account.home, "bin"), DEFAULT_PATH]
    env = {
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "PATH": ":".join(path),
        "LANG": "C.UTF-8",
    }
    runtime_dir = f"/run/user/{account.uid}"
    if os.path.isdir(runtime_dir):
        env["XDG_RUNTIME_DIR"] = runtime_dir
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


@dataclass
class Completed:
    """The outcome of one command."""

    argv: list[str]
    rc: int | None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    first_byte: float | None = None
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def tail(self, lines: int = 5) -> str:
        """The last lines of stderr (or stdout), for a failure's detail."""
        text = (self.stderr or self.stdout).strip()
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Runner:
    """Runs ``executable`` (resolved on the user's PATH) as ``account``."""

    account: Account
    executable: str = "docker"
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = user_environment(self.account, self.environment)

    def resolve(self) -> str:
        """The absolute path ``executable`` resolves to for the user."""
        if os.path.isabs(self.executable):
            found = self.executable if os.access(self.executable, os.X_OK) else None
        else:
            found = shutil.which(self.executable, path=self.env["PATH"])
        if not found:
            raise RunnerError(f"{self.executable!r} is not on PATH for user {self.account.name} ({self.env['PATH']})")
        return found

    def _preexec(self) -> Callable[[], None] | None:
        if self.account.is_current:
            return None
        account = self.account

        def switch() -> None:
            os.setgroups(list(account.groups))
            os.setgid(account.gid)
            os.setuid(account.uid)

        return switch

    def popen(self, args: Sequence[str], stdin: bool = False) -> subprocess.Popen:
        """Start ``executable args`` as the user; stdout and stderr are pipes."""
        argv = [self.resolve(), *args]
        cwd = self.account.home if os.path.isdir(self.account.home) else "/"
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=cwd,
            preexec_fn=self._preexec(),  # noqa: PLW1509 - drops privileges before exec, no threads involved
            start_new_session=True,
        )

    def run(
        self,
        args: Sequence[str],
        stdin_data: str | None = None,
        timeout: float = 60.0,
        on_stdout: Callable[[str], None] | None = None,
        deadline: Callable[[], float | None] | None = None,
    ) -> Completed:
        """Run to completion or until ``timeout``; stream stdout to ``on_stdout`` as it arrives.

        ``deadline`` may bring the end forward while the command runs: it returns a
        ``time.monotonic()`` instant (or None for no change), asked on every turn.
        """
        started = time.monotonic()
        proc = self.popen(args, stdin=stdin_data is not None)
        result = Completed(argv=[self.executable, *args], rc=None)
        end = started + timeout

        def current() -> float:
            sooner = deadline() if deadline is not None else None
            return end if sooner is None else min(end, sooner)

        _pump(proc, result, stdin_data, current, on_stdout)
        result.seconds = time.monotonic() - started
        if result.first_byte is not None:
            result.first_byte -= started
        return result


def _pump(
    proc: subprocess.Popen,
    result: Completed,
    stdin_data: str | None,
    deadline: Callable[[], float],
    on_stdout: Callable[[str], None] | None,
) -> None:
    """Feed stdin, read stdout and stderr until both close or the deadline passes."""
    selector = selectors.DefaultSelector()
    decoders = {"stdout": codecs.getincrementaldecoder("utf-8")("replace"), "stderr": codecs.getincrementaldecoder("utf-8")("replace")}
    chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}
    sizes = {"stdout": 0, "stderr": 0}
    selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
    selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
    pending = stdin_data.encode() if stdin_data is not None else b""
    if proc.stdin is not None:
        if pending:
            selector.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()
    while selector.get_map():
        remaining = deadline() - time.monotonic()
        if remaining <= 0:
            result.timed_out = True
            _kill(proc)
            break
        for key, _events in selector.select(timeout=min(remaining, 0.5)):
            if key.data == "stdin":
                try:
                    written = os.write(key.fd, pending[:65536])
                except BrokenPipeError:
                    written = len(pending)
                pending = pending[written:]
                if not pending:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                continue
            data = os.read(key.fd, 65536)
            if not data:
                selector.unregister(key.fileobj)
                continue
            if key.data == "stdout" and result.first_byte is None:
                result.first_byte = time.monotonic()
            text = decoders[key.data].decode(data)
            if key.data == "stdout" and on_stdout is not None:
                on_stdout(text)
            if sizes[key.data] < OUTPUT_LIMIT:
                chunks[key.data].append(text)
                sizes[key.data] += len(text)
            else:
                result.truncated = True
    selector.close()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            stream.close()
    try:
        result.rc = proc.wait(timeout=max(deadline() - time.monotonic(), 5))
    except subprocess.TimeoutExpired:
        result.timed_out = True
        _kill(proc)
        result.rc = proc.wait()
    result.stdout = "".join(chunks["stdout"])
    result.stderr = "".join(chunks["stderr"])


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def unit_environment(path: str) -> dict[str, str]:
    """The ``Environment=`` assignments of the systemd unit file at ``path`` (see :func:`parse_unit_environment`)."""
    with open(path, encoding="utf-8") as handle:
        return parse_unit_environment(handle.read())


def parse_unit_environment(text: str) -> dict[str, str]:
    """The ``Environment=`` assignments of a unit's ``[Service]`` section (later ones win, as in systemd).

    Each line may hold several assignments, quoted as systemd quotes them (double or single
    quotes, backslash escapes); ``%%`` is a literal ``%``. ``EnvironmentFile=`` is not read.
    """
    env: dict[str, str] = {}
    section = ""
    lines = text.replace("\\\n", " ").splitlines()
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if section != "Service" or not sep or key.strip() != "Environment":
            continue
        if not value.strip():
            env.clear()  # an empty assignment resets the list
            continue
        for item in shlex.split(value, posix=True):
            name, eq, val = item.partition("=")
            if eq and name:
                env[name] = val.replace("%%", "%")
    return env
