#!/usr/bin/python
# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runtime_compat
short_description: Check that a host's container runtime does everything NanoClaw asks of it
version_added: 0.1.0
description:
  - Runs, as the NanoClaw service user and through whatever C(docker) resolves to for that user
    (Docker, rootless Docker, the podman-docker shim or a C(docker) wrapper), each C(docker) CLI
    pattern the NanoClaw host process uses, for the generation asked for, against a named local
    image; then diagnoses the environment.
  - CLI patterns - C(info) (within NanoClaw's 10 s), C(run --rm --name), C(-i) with stdin (v1),
    C(-v host:ctr) and C(:ro) (writing to a read-only mount must fail), C(-e), C(--user UID:GID)
    with C(-e HOME), C(--add-host=host.docker.internal:host-gateway), C(ps --filter name=...)
    (v1) or C(--label) with C(ps --filter label=...) (v2) and C(--format '{{.Names}}'),
    C(stop -t 1), C(build -t) of a one-line context, and C(--entrypoint bash IMAGE -c ...) (v2).
  - The mount and build patterns of the real hosts (read from v1.2.53 and v2.0.64
    C(src/container-runner.ts)) - v1 C(mount_dev_null_file) (C(-v /dev/null:/workspace/project/.env:ro)
    over a file inside the read-only project mount - the file reads empty and cannot be written) and
    C(mount_nested_rw) (C(store/) read-write nested under the read-only project mount); v2
    C(mount_file_ro) (C(container.json) as a read-only single-file mount on the read-write group folder,
    inside the read-write session mount), C(entrypoint_exec_bun) (C(bash -c 'exec ...') hands PID 1 to the
    program and the image has C(bun)) and C(build_file) (C(build -t TAG -f FILE DIR), as v2 builds
    per-group images); and, informational for both, C(build_buildkit) (C(RUN --mount=type=cache) with
    C(-f), which upstream's v2 Dockerfile needs - Docker must build with BuildKit).
  - Environment diagnosis - engine and version, rootless or not, cgroup version, whether
    C(--memory), C(--cpus) and C(--pids-limit) are enforced (read from the container's own cgroup
    files, not trusted from the CLI's silence), whether the hardening flags C(--read-only),
    C(--tmpfs /tmp:mode=1777), C(--cap-drop=ALL) and C(--security-opt=no-new-privileges) work,
    C(--userns=keep-id) support, bind-mount ownership (does the host user own what the container
    writes), C(/dev/net/tun) and C(/dev/fuse) access for rootless engines, subordinate id ranges,
    rlimit failures (C(setrlimit ... Operation not permitted)) and C(DOCKER_HOST)/socket
    reachability.
  - Returns one record per check (name, required, passed, seconds, detail) and a summary. Fails
    only when a required check fails; which checks are required has defaults per generation and
    can be set with O(required). Every failing check's detail says what to do.
  - With O(record), a rerun on a host where nothing the checks depend on changed returns the
    recorded results after C(info) alone (see O(record)).
  - Cleans up everything it made - containers (all started with C(--rm) and a unique name, removed
    with C(rm -f) if still there), the image tag it builds, and its temporary directories.
author:
  - nanoclaw.provision maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nanoclaw.provision.attributes
attributes:
  check_mode:
    support: full
    details:
      - The module only reads the host's state. It runs the same in check mode - it starts
        throwaway C(--rm) containers, builds and removes one probe image tag and uses temporary
        directories, all removed before it returns, so a check-mode run reports real results.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Never reports C(changed).
  platform:
    platforms: posix
options:
  image:
    description:
      - A local image to run the probes in (never pulled). It needs C(sh), C(bash), C(cat), C(id)
        and C(touch) - the NanoClaw agent image has them.
    type: str
    required: true
  generation:
    description:
      - The NanoClaw generation whose CLI patterns to check.
    type: str
    choices: [v1, v2, both]
    default: v2
  user:
    description:
      - Run the CLI as this user (the NanoClaw service user), with that user's HOME, PATH
        (C(~/.local/bin), C(~/bin), then the system directories) and C(XDG_RUNTIME_DIR=/run/user/UID)
        when it exists. Default is the user the module runs as.
    type: str
  executable:
    description:
      - The CLI to check, resolved on the user's PATH.
    type: str
    default: docker
  environment:
    description:
      - Extra environment for the CLI, for example C(DOCKER_HOST).
    type: dict
    default: {}
  required:
    description:
      - Names of the checks that must pass. Default - every CLI pattern of the generation
        (C(info), C(run_rm_name), C(bind_mount), C(bind_mount_ro), C(env), C(user_home),
        C(add_host_gateway), C(stop), C(build); v1 adds C(run_stdin), C(ps_filter_name),
        C(mount_dev_null_file) and C(mount_nested_rw), v2 adds C(ps_filter_label), C(entrypoint),
        C(entrypoint_exec_bun), C(mount_file_ro) and C(build_file)). Environment checks and
        C(build_buildkit) are informational unless listed.
    type: list
    elements: str
  not_required:
    description:
      - Names of checks that run and are reported but do not fail the module, taken out of
        O(required) or the generation's default. For a pattern a host is known not to support and
        whose NanoClaw feature it will not use (for example C(build_file) where no agent group gets
        an image of its own); the failed check and its detail stay in the result.
    type: list
    elements: str
    default: []
  network:
    description:
      - C(--network) for every probe container. Default is the engine's default network, which is
        what NanoClaw uses.
    type: str
  limits:
    description:
      - The resource limits to ask for when checking enforcement.
    type: dict
    default: {}
    suboptions:
      memory:
        description: C(--memory) value in MiB.
        type: int
        default: 256
      cpus:
        description: C(--cpus) value.
        type: float
        default: 0.5
      pids:
        description: C(--pids-limit) value.
        type: int
        default: 64
  timeout:
    description:
      - Seconds any one CLI command may take.
    type: int
    default: 120
  record:
    description:
      - A file where the module keeps the results of its last run whose required checks all
        passed, with a fingerprint of everything they depend on - these options, the engine's
        C(--version) and C(info) (without counters and clocks), the resolved CLI's content (a
        wrapper or shim), the image's id, the engine's configuration files (C(/etc/containers),
        the user's C(~/.config/containers), C(daemon.json)), C(/etc/subuid), C(/etc/subgid) and
        the modes of C(/dev/net/tun) and C(/dev/fuse).
      - When this run's fingerprint is the recorded one and the record is younger than
        O(reuse_max_age), the module runs only C(info) (the engine must still answer) and returns
        the recorded checks with RV(reused=true), without starting a container. Anything else runs
        every check again. A run with a failed required check is never recorded, so a failure is
        always checked afresh.
      - The file is written owner-only (mode 0600) in a directory that must not be a symlink or
        writable by others, never in check mode. Without O(record) every run runs every check.
    type: path
  reuse_max_age:
    description:
      - Seconds a record stays good for; after that every check runs again. C(0) never reuses
        (the record is still written).
    type: int
    default: 86400
notes:
  - NanoClaw's host process shells out to C(docker); run this module with O(user) set to the
    account that runs NanoClaw so it sees the same engine, socket and storage.
  - Files a rootless container writes are owned by subordinate ids; the module (as root) removes
    its temporary directories itself.
seealso:
  - module: nanoclaw.provision.agent_smoke
"""

EXAMPLES = r"""
- name: Check the runtime as the NanoClaw service user (v2 patterns)
  nanoclaw.provision.runtime_compat:
    image: "nanoclaw-agent-v2-{{ nanoclaw_slug }}:latest"
    user: nanoclaw
  register: compat

- name: Show the checks
  ansible.builtin.debug:
    msg: "{{ compat.checks | map(attribute='name') | zip(compat.checks | map(attribute='passed')) | list }}"

- name: Require resource limits to be enforced as well (both generations)
  nanoclaw.provision.runtime_compat:
    image: nanoclaw-agent:latest
    user: nanoclaw
    generation: both
    required: [info, run_rm_name, run_stdin, bind_mount, bind_mount_ro, env, memory_limit, cpu_limit, pids_limit]

- name: Gate a play on the result without failing here
  nanoclaw.provision.runtime_compat:
    image: nanoclaw-agent:latest
    user: nanoclaw
    required: []
  register: compat_info
"""

RETURN = r"""
checks:
  description: One record per check, in the order they ran.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Check name.
      type: str
      sample: bind_mount_ro
    required:
      description: Whether a failure of this check fails the module.
      type: bool
    passed:
      description: Whether the check passed.
      type: bool
    seconds:
      description: Wall time of the check.
      type: float
      sample: 0.84
    detail:
      description: What was seen; for a failure, what to do about it.
      type: str
summary:
  description: Totals - C(total), C(passed), C(failed) (names), C(required_failed) (names), C(ok), C(seconds).
  returned: always
  type: dict
  sample:
    total: 24
    passed: 21
    failed: [memory_limit, cpu_limit, pids_limit]
    required_failed: []
    ok: true
    seconds: 21.4
engine:
  description: What the CLI is - C(name) (docker or podman), C(version), C(rootless), C(cgroup_version),
    C(cgroup_driver), C(storage_driver), C(executable) (resolved path), C(version_text).
  returned: always
  type: dict
  sample: {"name": "podman", "version": "4.3.1", "rootless": true, "cgroup_version": "1", "executable": "/home/nanoclaw/.local/bin/docker"}
reused:
  description: Whether the checks were taken from O(record) (nothing they depend on changed) instead of run.
  returned: always
  type: bool
checked_at:
  description: When (UTC, ISO 8601) the checks returned last ran in full - this run, or the recorded one.
  returned: always
  type: str
  sample: "2026-12-02T21:34:55Z"
limits:
  description: The limits seen inside the probe container (C(memory) in bytes, C(cpus), C(pids)), or C(unlimited).
  returned: when the limits probe ran
  type: dict
  sample: {"memory": "268435456", "cpus": "0.5", "pids": "64"}
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import uuid
from collections.abc import Callable

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nanoclaw.provision.plugins.module_utils._checks import (
    Check,
    CheckList,
    EngineFacts,
    Outcome,
    effective_limits,
    engine_from_version_text,
    parse_info,
    parse_key_values,
    stable_info,
)
from ansible_collections.nanoclaw.provision.plugins.module_utils._engine import HOST_GATEWAY, CliEngine, poll_gone
from ansible_collections.nanoclaw.provision.plugins.module_utils._runner import Account, Completed, Runner, RunnerError, resolve_account

COMMON = ["info", "run_rm_name", "bind_mount", "bind_mount_ro", "env", "user_home", "add_host_gateway", "stop", "build"]
PATTERNS = {
    "v1": [*COMMON, "run_stdin", "ps_filter_name", "mount_dev_null_file", "mount_nested_rw"],
    "v2": [*COMMON, "ps_filter_label", "entrypoint", "entrypoint_exec_bun", "mount_file_ro", "build_file"],
}
# Reads the container's own cgroup files (v2 first, then v1 at its own path or the mount root).
CGROUP_SCRIPT = r"""
for f in memory.max cpu.max pids.max; do [ -r /sys/fs/cgroup/$f ] && echo "$f=$(cat /sys/fs/cgroup/$f)"; done
cg() {
  p=$(sed -n "s/^[0-9]*:\([^:]*,\)\{0,1\}$1\(,[^:]*\)\{0,1\}:\(.*\)$/\3/p" /proc/self/cgroup | head -n 1)
  for d in "/sys/fs/cgroup/$1$p" "/sys/fs/cgroup/$1"; do
    if [ -r "$d/$2" ]; then echo "$2=$(cat "$d/$2")"; return 0; fi
  done
}
if [ ! -r /sys/fs/cgroup/memory.max ]; then
  cg memory memory.limit_in_bytes; cg cpu cpu.cfs_quota_us; cg cpu cpu.cfs_period_us; cg pids pids.max
fi
"""
HARDENING_SCRIPT = r"""
if touch /nanoclaw-compat-probe 2>/dev/null; then echo rootfs=writable; else echo rootfs=readonly; fi
if touch /tmp/nanoclaw-compat-probe 2>/dev/null; then echo tmp=writable; else echo tmp=readonly; fi
sed -n 's/^CapEff:[[:space:]]*/capeff=/p; s/^NoNewPrivs:[[:space:]]*/nonewprivs=/p' /proc/self/status
"""


DETAIL_LIMIT = 300
# NanoClaw runs `docker info` with a 10 s timeout at start (src/container-runtime.ts).
INFO_SECONDS = 10.0
RLIMIT_ERROR = re.compile(r"(setrlimit|setting rlimit).*not permitted", re.IGNORECASE)
# Engine errors whose cause another check explains, and what to do.
KNOWN_CAUSES = [
    ("/dev/net/tun", "rootless networking cannot open /dev/net/tun, see the dev_net_tun check (chmod 0666 /dev/net/tun)"),
    ("/dev/fuse", "fuse-overlayfs cannot open /dev/fuse, see the dev_fuse check (chmod 0666 /dev/fuse)"),
    ("rlimit", "the engine's default ulimits exceed the host's hard limits, see the rlimits check"),
    ("newuidmap", "the user has no subordinate ids, see the subuid_subgid check"),
]


def token() -> str:
    return uuid.uuid4().hex[:12]


class Probe:
    """Runs the probe containers and remembers what to clean up."""

    def __init__(self, module: AnsibleModule, account: Account, runner: Runner) -> None:
        self.module = module
        self.params = module.params
        self.account = account
        self.runner = runner
        self.engine = CliEngine(runner)
        self.prefix = f"nanoclaw-compat-{token()[:8]}"
        self.names: list[str] = []
        self.dirs: list[str] = []
        self.images: list[str] = []
        self.stderr_seen: list[str] = []
        self.facts = EngineFacts()
        self.rlimits: dict[str, str] = {}
        self.limits_seen: dict[str, str] | None = None
        self.limits_warning = False
        self.limits_error = ""
        self.version_text = ""
        self.info_text = ""

    # ------------------------------------------------------------ helpers
    def cli(self, args: list[str], stdin_data: str | None = None, timeout: float | None = None) -> Completed:
        done = self.runner.run(args, stdin_data=stdin_data, timeout=float(timeout or self.params["timeout"]))
        if done.stderr:
            self.stderr_seen.append(done.stderr)
        return done

    def name(self, what: str) -> str:
        name = f"{self.prefix}-{what.replace('_', '-')}"
        self.names.append(name)
        return name

    def run_args(self, what: str, flags: list[str], script: str, entrypoint: str = "sh", interactive: bool = False) -> list[str]:
        args = ["run"] + (["-i"] if interactive else []) + ["--rm", "--name", self.name(what)]
        if self.params["network"]:
            args += ["--network", self.params["network"]]
        return [*args, *flags, "--entrypoint", entrypoint, self.params["image"], "-c", script]

    def sh(
        self, what: str, script: str, flags: list[str] | None = None, stdin_data: str | None = None, entrypoint: str = "sh"
    ) -> Completed:
        args = self.run_args(what, flags or [], script, entrypoint, interactive=stdin_data is not None)
        return self.cli(args, stdin_data=stdin_data)

    def tempdir(self, mode: int = 0o700) -> str:
        path = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.dirs.append(path)
        os.chmod(path, mode)
        os.chown(path, self.account.uid, self.account.gid)
        return path

    def as_user(self, argv: list[str]) -> Completed:
        helper = Runner(self.account, argv[0], self.params["environment"])
        return helper.run(argv[1:], timeout=30)

    def failed(self, done: Completed, what: str) -> str:
        if done.timed_out:
            return f"{what} did not finish within {self.params['timeout']} s"
        text = done.tail(3) or "(no output)"
        if len(text) > DETAIL_LIMIT:
            text = text[:DETAIL_LIMIT] + "..."
        detail = f"{what} failed (exit {done.rc}): {text}"
        for needle, cause in KNOWN_CAUSES:
            if needle in done.stderr:
                detail += f" [cause: {cause}]"
                break
        return detail

    def rootless(self) -> bool:
        """Rootless per the engine; before it answered, assume so for a non-root user."""
        if self.facts.rootless is None:
            return self.account.uid != 0
        return bool(self.facts.rootless)

    def cleanup(self) -> None:
        if not (self.names or self.images or self.dirs):
            return
        listed = self.runner.run(["ps", "-a", "--filter", f"name={self.prefix}", "--format", "{{.Names}}"], timeout=60)
        leftovers = [n for n in listed.stdout.split() if n in self.names] if listed.ok else self.names
        for name in leftovers:
            self.engine.remove(name)
        for image in self.images:
            self.runner.run(["rmi", "-f", image], timeout=60)
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------ CLI patterns
    def check_info(self) -> Outcome:
        # Up to the module's timeout, not NanoClaw's 10 s: an engine that answers late on a loaded
        # host is compatible (NanoClaw exits and its service restarts it); the detail says so.
        version = self.cli(["--version"])
        self.facts.name = engine_from_version_text(version.stdout)
        self.version_text = version.stdout.strip()
        started = time.monotonic()
        done = self.cli(["info", "--format", "{{json .}}"])
        seconds = time.monotonic() - started
        if not done.ok:
            return False, (
                self.failed(done, "info") + "; NanoClaw exits at start when `docker info` fails within 10 s: start the engine"
                " (dockerd / the user's podman), check DOCKER_HOST and that this user may use the socket"
            )
        self.info_text = done.stdout
        self.facts = parse_info(self.facts.name, done.stdout)
        mode = "rootless" if self.facts.rootless else "rootful"
        slow = (
            " (slower than the 10 s NanoClaw waits for at start: it would exit and be restarted;"
            " is the host overloaded or the engine still starting?)"
            if seconds > INFO_SECONDS
            else ""
        )
        return True, (
            f"{self.facts.name} {self.facts.version}, {mode}, cgroup v{self.facts.cgroup_version or '?'}"
            f" ({self.facts.cgroup_driver or '?'}), storage {self.facts.storage_driver or '?'}; answered in {seconds:.2f} s{slow}"
        )

    def check_run_rm_name(self) -> Outcome:
        mark = token()
        what = "run_rm_name"
        done = self.sh(what, f"echo {mark}; echo nofile_soft=$(ulimit -Sn); echo nofile_hard=$(ulimit -Hn)")
        name = self.names[-1]
        if not done.ok:
            return False, self.failed(done, "run --rm --name")
        self.rlimits = parse_key_values(done.stdout)
        if mark not in done.stdout:
            return False, f"the container ran but its output lacks the marker: {done.stdout[-200:]!r}"
        if not self.wait_gone(name):
            return False, f"container {name} still exists after it exited: --rm is not honoured; remove it with `docker rm -f {name}`"
        return True, "ran, printed its output and was removed (--rm)"

    def wait_gone(self, name: str, seconds: float = 60.0) -> bool:
        # Generous for a loaded host, as wait_listed: a late removal is not an incompatibility.
        return poll_gone(self.exists, name, seconds)

    def exists(self, name: str) -> bool:
        # CliEngine's listing, but through cli(): the engine's stderr is kept for check_rlimits,
        # and each listing gets 30 s.
        return name in self.cli(CliEngine.exists_argv(name), timeout=30).stdout.split()

    def check_run_stdin(self) -> Outcome:
        payload = json.dumps({"prompt": "nanoclaw.provision compatibility probe", "token": token()})
        done = self.sh("run_stdin", "cat", stdin_data=payload)
        if not done.ok:
            return False, self.failed(done, "run -i with stdin")
        if done.stdout.strip() != payload:
            return False, f"stdin did not reach the container intact: sent {len(payload)} bytes, got {done.stdout.strip()[:200]!r}"
        return True, f"{len(payload)} bytes of JSON on stdin came back unchanged"

    def check_bind_mount(self) -> Outcome:
        host = self.tempdir()
        mark = token()
        done = self.sh("bind_mount", f"echo {mark} > /workspace/compat-rw/probe", ["-v", f"{host}:/workspace/compat-rw"])
        if not done.ok:
            return False, self.failed(done, "run -v host:ctr") + "; the engine must be able to bind-mount the user's directories"
        try:
            with open(os.path.join(host, "probe"), encoding="utf-8") as handle:
                seen = handle.read().strip()
        except OSError as exc:
            return False, f"the file the container wrote is not visible on the host: {exc}"
        if seen != mark:
            return False, f"the host sees {seen!r}, the container wrote {mark!r}"
        return True, "the host sees what the container wrote in a read-write bind mount"

    def check_bind_mount_ro(self) -> Outcome:
        host = self.tempdir(0o755)
        mark = token()
        path = os.path.join(host, "probe")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(mark)
        os.chmod(path, 0o644)
        script = "cat /workspace/compat-ro/probe; if echo x > /workspace/compat-ro/probe 2>/dev/null; then echo WRITE=ok; fi"
        done = self.sh("bind_mount_ro", script, ["-v", f"{host}:/workspace/compat-ro:ro"])
        if not done.ok:
            return False, self.failed(done, "run -v host:ctr:ro")
        if mark not in done.stdout:
            return False, "the container cannot read its read-only mount"
        if "WRITE=ok" in done.stdout:
            return (
                False,
                "writing to a :ro mount succeeded: this engine ignores :ro;"
                " do not run NanoClaw on it (its project mount must be read-only)",
            )
        return True, "readable, and writing to it failed as it must"

    def check_env(self) -> Outcome:
        mark = token()
        done = self.sh("env", 'printf %s "$NANOCLAW_COMPAT"', ["-e", f"NANOCLAW_COMPAT={mark}"])
        if not done.ok:
            return False, self.failed(done, "run -e")
        return (done.stdout == mark, "the variable arrived" if done.stdout == mark else f"-e did not arrive: got {done.stdout[:100]!r}")

    def container_ids(self) -> tuple[int, int]:
        """The --user NanoClaw would pass: the host uid:gid, or 1000:1000 when that is 0."""
        if self.account.uid == 0:
            return 1000, 1000
        return self.account.uid, self.account.gid

    def check_user_home(self) -> Outcome:
        uid, gid = self.container_ids()
        done = self.sh("user_home", 'echo "$(id -u):$(id -g):$HOME"', ["--user", f"{uid}:{gid}", "-e", "HOME=/home/node"])
        if not done.ok:
            return False, self.failed(done, f"run --user {uid}:{gid}")
        expected = f"{uid}:{gid}:/home/node"
        if done.stdout.strip() != expected:
            return False, f"expected {expected}, the container says {done.stdout.strip()!r}"
        return True, f"runs as {uid}:{gid} with HOME=/home/node"

    def check_add_host_gateway(self) -> Outcome:
        done = self.sh("add_host", "grep -w host.docker.internal /etc/hosts", [HOST_GATEWAY])
        if not done.ok:
            detail = self.failed(done, HOST_GATEWAY)
            if "host-gateway" in done.stderr:
                detail += (
                    f"; {self.facts.name} {self.facts.version} does not understand the special value host-gateway that"
                    " NanoClaw passes: upgrade to an engine release that supports it (Docker 20.10+, a newer Podman)"
                )
            return False, detail
        return True, "host.docker.internal resolves to " + done.stdout.split()[0]

    def spawn_named(self, what: str, flags: list[str]):
        """A long-running container started attached, as NanoClaw starts agents (stopped by the check)."""
        args = self.run_args(what, flags, "exec sleep 600")
        return self.names[-1], self.runner.popen(args)

    def wait_listed(self, filter_arg: str, name: str, proc, seconds: float = 180.0) -> bool:
        # Generous: on a loaded host an engine can take minutes to start a container, and a
        # late listing is not an incompatibility (the probe process ending early is caught).
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            done = self.cli(["ps", "--filter", filter_arg, "--format", "{{.Names}}"], timeout=30)
            if name in done.stdout.split():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.3)
        return False

    def check_ps_and_stop(self, checks: CheckList, generation: str) -> None:
        slug = token()[:8]
        name, proc = self.spawn_named("ps_stop", ["--label", f"nanoclaw-install={slug}"])
        try:
            if "v1" in generation:
                checks.run("ps_filter_name", lambda: self.listed(f"name={self.prefix}-ps", name, "name", proc))
            if "v2" in generation:
                checks.run("ps_filter_label", lambda: self.listed(f"label=nanoclaw-install={slug}", name, "label", proc))
            checks.run("stop", lambda: self.stop(name, proc))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

    def listed(self, filter_arg: str, name: str, kind: str, proc) -> Outcome:
        if self.wait_listed(filter_arg, name, proc):
            return True, f"ps --filter {filter_arg} --format '{{{{.Names}}}}' lists the container"
        if proc.poll() is not None:
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
            self.stderr_seen.append(err)
            done = Completed(argv=[], rc=proc.returncode, stderr=err)
            return False, self.failed(done, "the long-running probe container") + f"; could not check ps --filter {kind}"
        return (
            False,
            f"ps --filter {filter_arg} does not list the running container {name}: NanoClaw's orphan clean-up by {kind} would miss it",
        )

    def stop(self, name: str, proc) -> Outcome:
        started = time.monotonic()
        done = self.cli(["stop", "-t", "1", name], timeout=180)
        seconds = time.monotonic() - started
        if not done.ok:
            return False, self.failed(done, "stop -t 1")
        try:
            proc.wait(timeout=30)
        except Exception:
            return False, "stop -t 1 returned but the attached run did not end within 30 s"
        if not self.wait_gone(name):
            return False, f"{name} still exists after stop -t 1 (--rm not honoured on stop)"
        return True, f"stopped in {seconds:.2f} s and removed"

    def probe_build(self, suffix: str, dockerfile: str, file_name: str | None = None) -> tuple[str, Completed]:
        """Build ``dockerfile`` as localhost/<prefix>:<suffix> (removed at the end) from a fresh context:
        as ``Dockerfile`` in it, or, with ``file_name``, as that file given with ``-f``."""
        context = self.tempdir(0o755)
        path = os.path.join(context, file_name or "Dockerfile")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(dockerfile)
        os.chmod(path, 0o644)
        tag = f"localhost/{self.prefix}:{suffix}"
        self.images.append(tag)
        return tag, self.cli(["build", "-t", tag, *(["-f", path] if file_name else []), context])

    def check_build(self) -> Outcome:
        tag, done = self.probe_build("probe", f"FROM {self.params['image']}\n")
        if not done.ok:
            return False, self.failed(done, "build -t") + "; NanoClaw builds its agent image with `docker build -t TAG DIR`"
        inspected = self.cli(["image", "inspect", tag], timeout=60)
        if not inspected.ok:
            return False, f"build succeeded but {tag} is not listed afterwards"
        return True, f"built {tag} from a one-line context (removed afterwards)"

    def check_entrypoint(self) -> Outcome:
        mark = token()
        done = self.sh("entrypoint", f"echo {mark}", entrypoint="bash")
        if not done.ok:
            return False, self.failed(done, "--entrypoint bash IMAGE -c") + "; the image needs bash for NanoClaw v2"
        return (mark in done.stdout, "bash ran as the entrypoint" if mark in done.stdout else "bash ran but printed nothing")

    # v1.2.53 src/container-runner.ts (buildVolumeMounts) for the main group: the project root read-only,
    # /dev/null over its .env (a single-file read-only mount) and its store/ read-write inside it.
    def v1_project_mounts(self) -> tuple[str, list[str]]:
        project = self.tempdir(0o755)
        store = os.path.join(project, "store")
        os.mkdir(store)
        os.chmod(store, 0o777)
        env_file = os.path.join(project, ".env")
        with open(env_file, "w", encoding="utf-8") as handle:
            handle.write("NANOCLAW_COMPAT_SECRET=must-not-be-read\n")
        os.chmod(env_file, 0o644)
        flags = [
            "-v",
            f"{project}:/workspace/project:ro",
            "-v",
            "/dev/null:/workspace/project/.env:ro",
            "-v",
            f"{store}:/workspace/project/store",
        ]
        return project, flags

    def check_mount_dev_null_file(self) -> Outcome:
        project, flags = self.v1_project_mounts()
        env_file = os.path.join(project, ".env")
        with open(env_file, encoding="utf-8") as handle:
            before = handle.read()
        # Writing to a device node is allowed even on a read-only mount: what must hold is that the
        # agent reads nothing there and cannot change the host's .env.
        script = (
            'echo "size=$(wc -c < /workspace/project/.env)"; '
            "echo NANOCLAW_COMPAT_OVERWRITE=1 > /workspace/project/.env 2>/dev/null; "
            "rm -f /workspace/project/.env 2>/dev/null; "
            'echo "after=$(wc -c < /workspace/project/.env)"'
        )
        done = self.sh("dev_null_file", script, flags)
        if not done.ok:
            return False, self.failed(done, "run -v /dev/null:/workspace/project/.env:ro") + (
                "; NanoClaw v1 hides the project's .env from the main agent with this single-file mount"
            )
        seen = parse_key_values(done.stdout)
        with open(env_file, encoding="utf-8") as handle:
            after = handle.read()
        if seen.get("size") != "0" or seen.get("after") != "0":
            return False, (
                f"/workspace/project/.env shows {seen.get('size')} (then {seen.get('after')}) bytes, not /dev/null's 0:"
                " the project's .env is not hidden from the agent"
            )
        if after != before:
            return False, "the container changed the host's .env through the mounts: the project mount is not read-only"
        return True, "/dev/null over a file inside the read-only project mount: the agent reads nothing and cannot change the host's file"

    def check_mount_nested_rw(self) -> Outcome:
        project, flags = self.v1_project_mounts()
        mark = token()
        script = (
            f"echo {mark} > /workspace/project/store/probe && echo store=ok; "
            "if touch /workspace/project/probe 2>/dev/null; then echo project=writable; else echo project=readonly; fi"
        )
        done = self.sh("nested_rw", script, flags)
        if not done.ok:
            return False, self.failed(done, "a read-write mount nested under a read-only one")
        seen = parse_key_values(done.stdout)
        try:
            with open(os.path.join(project, "store", "probe"), encoding="utf-8") as handle:
                host_sees = handle.read().strip()
        except OSError:
            host_sees = None
        if seen.get("store") != "ok" or host_sees != mark:
            return False, (
                "the container could not write store/ (read-write, nested under the read-only project mount)"
                f" or the host does not see it ({host_sees!r}): NanoClaw v1's main agent writes its database there"
            )
        if seen.get("project") != "readonly":
            return False, "the read-only project mount became writable once a read-write mount was nested under it"
        return True, "store/ read-write inside the read-only project mount; the project itself stays read-only"

    # v2.0.64 src/container-runner.ts (buildMounts): the session at /workspace, the group folder at
    # /workspace/agent and its container.json as a read-only single file on top of it.
    def check_mount_file_ro(self) -> Outcome:
        session = self.tempdir(0o777)
        group = os.path.join(session, "group-src")
        os.mkdir(group)
        os.chmod(group, 0o777)
        config = os.path.join(group, "container.json")
        mark = token()
        with open(config, "w", encoding="utf-8") as handle:
            json.dump({"provider": "mock", "probe": mark}, handle)
        os.chmod(config, 0o644)
        flags = ["-v", f"{session}:/workspace", "-v", f"{group}:/workspace/agent", "-v", f"{config}:/workspace/agent/container.json:ro"]
        script = (
            "cat /workspace/agent/container.json; echo; "
            "if echo x > /workspace/agent/container.json 2>/dev/null; then echo config=writable; else echo config=readonly; fi; "
            "touch /workspace/agent/work && echo agent=ok; touch /workspace/.heartbeat && echo session=ok"
        )
        done = self.sh("file_ro", script, flags)
        if not done.ok:
            return False, self.failed(done, "run -v FILE:/workspace/agent/container.json:ro inside two read-write mounts")
        seen = parse_key_values(done.stdout)
        if mark not in done.stdout:
            return False, "the container cannot read container.json through its single-file mount: NanoClaw v2's runner reads it at start"
        if seen.get("config") != "readonly":
            return False, "container.json is writable in the container although it is mounted :ro (the agent could change its own config)"
        if seen.get("agent") != "ok" or seen.get("session") != "ok":
            return False, "the read-write session or group mount is not writable around the single-file mount"
        if not os.path.exists(os.path.join(session, ".heartbeat")):
            return False, "the host does not see the heartbeat file the container touched in /workspace"
        return True, "container.json read-only as a single file over the read-write group folder, inside the read-write session"

    def check_entrypoint_exec_bun(self) -> Outcome:
        # v2 runs `--entrypoint bash IMAGE -c 'exec bun run /app/src/index.ts'`: bash must hand PID 1 to
        # bun (exec), so `stop -t 1` signals the runner itself, and bun must be on the image's PATH.
        done = self.sh("exec_bun", "exec sh -c 'echo pid=$$; echo bun=$(command -v bun || echo missing)'", entrypoint="bash")
        if not done.ok:
            return False, self.failed(done, "--entrypoint bash IMAGE -c 'exec ...'")
        seen = parse_key_values(done.stdout)
        if seen.get("pid") != "1":
            return False, f"the program bash exec'd runs as PID {seen.get('pid')}, not 1: stop -t 1 would signal a shell, not the runner"
        if seen.get("bun", "missing") == "missing":
            return (
                False,
                "bash -c 'exec bun run /app/src/index.ts' cannot work: the image has no bun on its PATH (not a NanoClaw v2 agent image)",
            )
        return True, f"bash -c 'exec ...' hands PID 1 to the program; bun is {seen['bun']}"

    def check_build_file(self) -> Outcome:
        # v2 builds per-agent-group images: `docker build -t TAG -f DATA_DIR/Dockerfile.<id> .` (cwd DATA_DIR),
        # FROM the agent image, USER root, RUN ..., USER node.
        tag, done = self.probe_build("file", f"FROM {self.params['image']}\nUSER root\nRUN true\nUSER node\n", "Dockerfile.probe")
        if not done.ok:
            detail = self.failed(done, "build -t TAG -f FILE DIR") + "; NanoClaw v2 builds per-group images this way"
            if "/buildkit/" in done.stderr and "cgroup" in done.stderr:
                detail += (
                    "; BuildKit could not start the RUN step's container: its runc cannot mount the cgroup v1"
                    " hierarchy it expects, as in an engine nested in a container on a cgroup v1 host. Build on a"
                    " cgroup v2 host, or outside such a container"
                )
            return False, detail
        return True, f"built {tag} with -f (a Dockerfile named Dockerfile.probe; removed afterwards)"

    def check_build_buildkit(self) -> Outcome:
        # Upstream's v2 container/Dockerfile needs BuildKit (RUN --mount=type=cache); container/build.sh runs a plain
        # `docker build`, so the CLI must use BuildKit by default. (No `# syntax=` line here: it would fetch the
        # frontend image from a registry.)
        _tag, done = self.probe_build(
            "buildkit", f"FROM {self.params['image']}\nRUN --mount=type=cache,target=/tmp/nanoclaw-compat-cache true\n", "Dockerfile.probe"
        )
        if not done.ok:
            detail = self.failed(done, "build -f FILE with RUN --mount=type=cache")
            if "BuildKit" in done.stderr or "--mount" in done.stderr:
                detail += (
                    "; this docker builds with the classic builder: install the CLI's buildx plugin (Debian's docker-buildx"
                    " package; a docker CLI older than 23 also builds with DOCKER_BUILDKIT=1) to build NanoClaw v2's agent image"
                )
            return False, detail
        return True, "RUN --mount=type=cache builds with -f (BuildKit or Buildah)"

    # ------------------------------------------------------------ environment
    def limits_probe(self) -> dict[str, str]:
        if self.limits_seen is None:
            lim = self.params["limits"]
            flags = ["--memory", f"{lim['memory']}m", "--cpus", f"{lim['cpus']:g}", "--pids-limit", str(lim["pids"])]
            done = self.sh("limits", CGROUP_SCRIPT, flags)
            if not done.ok:
                self.limits_error = self.failed(done, "run with --memory/--cpus/--pids-limit")
                self.limits_seen = {}
            else:
                self.limits_seen = effective_limits(parse_key_values(done.stdout))
            self.limits_warning = "ignored" in done.stderr.lower()
        return self.limits_seen

    def limit_check(self, key: str, flag: str, wanted: str) -> Outcome:
        seen = self.limits_probe().get(key)
        if seen is None:
            return False, f"could not check {flag}: {self.limits_error}"
        if seen == wanted:
            return True, f"{flag} is enforced: the container's cgroup says {seen}"
        why = f"{flag} {wanted} asked, the container's own cgroup files say {seen}: NOT enforced"
        if self.rootless() and self.facts.cgroup_version == "1":
            why += (
                f" (rootless {self.facts.name} on cgroup v1 ignores resource limits). Fix: boot with the unified"
                " cgroup v2 hierarchy (systemd.unified_cgroup_hierarchy=1) and delegate cpu, memory and pids to"
                " the user, or run the engine rootful, or cap the NanoClaw service as a whole (systemd MemoryMax=,"
                " CPUQuota=, TasksMax=)"
            )
        elif self.limits_warning:
            why += "; the engine warned that it ignores limits: enable the controller for this user"
        else:
            why += "; enable the cgroup controller for the engine (and delegate it to the user when rootless)"
        return False, why

    def check_memory(self) -> Outcome:
        return self.limit_check("memory", "--memory", str(self.params["limits"]["memory"] * 1024 * 1024))

    def check_cpus(self) -> Outcome:
        return self.limit_check("cpus", "--cpus", f"{self.params['limits']['cpus']:g}")

    def check_pids(self) -> Outcome:
        return self.limit_check("pids", "--pids-limit", str(self.params["limits"]["pids"]))

    def check_hardening(self) -> Outcome:
        flags = ["--read-only", "--tmpfs", "/tmp:mode=1777", "--cap-drop=ALL", "--security-opt=no-new-privileges"]
        done = self.sh("hardening", HARDENING_SCRIPT, flags)
        if not done.ok:
            return False, self.failed(done, "run " + " ".join(flags))
        seen = parse_key_values(done.stdout)
        problems = []
        if seen.get("rootfs") != "readonly":
            problems.append("--read-only did not make / read-only")
        if seen.get("tmp") != "writable":
            problems.append("--tmpfs /tmp is not writable")
        if seen.get("capeff", "").strip("0"):
            problems.append(f"--cap-drop=ALL left capabilities {seen.get('capeff')}")
        if seen.get("nonewprivs") != "1":
            problems.append("no-new-privileges is not set")
        if problems:
            return False, "; ".join(problems) + ": the engine does not apply the hardening flags; update it"
        return True, "read-only root, writable tmpfs /tmp, no capabilities, no_new_privs set"

    def check_keep_id(self) -> Outcome:
        if self.facts.name != "podman":
            return False, (
                f"{self.facts.name} has no --userns=keep-id; "
                + (
                    "not needed while the engine is rootful (bind mounts keep host uids)"
                    if not self.rootless()
                    else "rootless Docker maps the user to root: keep NanoClaw's uid at 1000 or use Podman"
                )
            )
        done = self.sh("keep_id", "id -u", ["--userns=keep-id"])
        if not done.ok:
            return False, self.failed(done, "--userns=keep-id") + "; update Podman (keep-id needs subordinate ids for the user)"
        seen = done.stdout.strip()
        if seen != str(self.account.uid):
            return False, f"--userns=keep-id ran as uid {seen}, not the host uid {self.account.uid}"
        return True, f"--userns=keep-id runs as the host uid {seen}"

    def check_ownership(self) -> Outcome:
        host = self.tempdir(0o777)
        os.chmod(host, 0o777)
        flags = ["-v", f"{host}:/workspace/group"]
        uid, gid = self.container_ids()
        passes_user = self.account.uid not in (0, 1000)
        if passes_user:
            flags += ["--user", f"{uid}:{gid}", "-e", "HOME=/home/node"]
        done = self.sh("ownership", "touch /workspace/group/owned", flags)
        how = f"with --user {uid}:{gid}" if passes_user else "without --user"
        if not done.ok:
            return False, self.failed(done, f"writing to a bind mount {how}")
        owner = os.stat(os.path.join(host, "owned")).st_uid
        if owner == self.account.uid:
            return True, f"a file the container writes ({how}, as NanoClaw runs it) is owned by the host user (uid {owner})"
        fix = (
            "rootless Podman maps container uids to subordinate ids; make it map the user to itself with --userns=keep-id"
            ' (NanoClaw does not pass it: set userns = "keep-id" under [containers] in the user\'s ~/.config/containers/containers.conf)'
            if self.facts.name == "podman" and self.rootless()
            else "run the container as the host user's uid (--user) or chown the data directories"
        )
        return False, f"a file the container writes ({how}) is owned by host uid {owner}, not the user's uid {self.account.uid}: {fix}"

    def device_check(self, path: str, needed: bool, why: str) -> Outcome:
        if not needed:
            return True, f"not needed: {why}"
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError as exc:
            return False, f"{path} is missing ({exc}): load the kernel module (modprobe {os.path.basename(path)})"
        done = self.as_user(["sh", "-c", f"exec 3<>{path}"])
        if done.ok:
            return True, f"{path} (mode {mode:04o}) opens read-write for {self.account.name}"
        return False, (
            f"{path} is mode {mode:04o} and {self.account.name} cannot open it: {why} fails."
            f" Fix: chmod 0666 {path} (the Debian/Ubuntu default) and keep it with a udev rule"
            f' (KERNEL=="{os.path.basename(path)}", MODE="0666")'
        )

    def check_tun(self) -> Outcome:
        network = self.params["network"] or ""
        needed = self.rootless() and network not in ("none", "host")
        return self.device_check(
            "/dev/net/tun",
            needed,
            "rootless networking (slirp4netns/pasta)" if needed else "the engine is rootful or the network is none/host",
        )

    def check_fuse(self) -> Outcome:
        needed = self.rootless() and ("fuse" in self.facts.storage_driver or "fuse" in self.facts.storage_options)
        reason = "fuse-overlayfs storage" if needed else f"storage driver {self.facts.storage_driver or '?'} does not use fuse-overlayfs"
        return self.device_check("/dev/fuse", needed, reason)

    def check_subids(self) -> Outcome:
        if not self.rootless():
            return True, "not needed: the engine is rootful"
        missing = []
        for path in ("/etc/subuid", "/etc/subgid"):
            try:
                with open(path, encoding="utf-8") as handle:
                    owners = {line.split(":", 1)[0] for line in handle if ":" in line}
            except OSError:
                owners = set()
            if self.account.name not in owners and str(self.account.uid) not in owners:
                missing.append(path)
        if missing:
            return (
                False,
                f"{self.account.name} has no range in {', '.join(missing)}:"
                f" usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {self.account.name}",
            )
        return True, f"{self.account.name} has ranges in /etc/subuid and /etc/subgid"

    def check_rlimits(self) -> Outcome:
        # crun says "setrlimit RLIMIT_NOFILE: Operation not permitted", runc "error setting rlimit type 7: operation not permitted".
        line = next((x for x in "\n".join(self.stderr_seen).splitlines() if RLIMIT_ERROR.search(x)), None)
        if line:
            return False, (
                f"the engine failed with {line.strip()!r}: its default ulimits exceed this host's hard limits."
                ' Podman: default_ulimits = ["nofile=N:N"] in containers.conf; Docker: --default-ulimit nofile=N:N for dockerd'
            )
        if not self.rlimits:
            return False, "not checked: no probe container ran"
        return True, f"containers start; nofile soft {self.rlimits.get('nofile_soft', '?')}, hard {self.rlimits.get('nofile_hard', '?')}"

    def check_docker_host(self) -> Outcome:
        value = self.runner.env.get("DOCKER_HOST", "")
        if not value:
            if self.facts.name == "podman":
                return True, "DOCKER_HOST unset; the podman CLI needs no socket (API clients need podman.socket and DOCKER_HOST)"
            default = f"{self.runner.env.get('XDG_RUNTIME_DIR', '')}/docker.sock" if self.rootless() else "/var/run/docker.sock"
            value = f"unix://{default}"
        if value.startswith("unix://"):
            path = value[len("unix://") :]
            done = self.as_user(["sh", "-c", f'test -S "{path}" && test -w "{path}"'])
            if done.ok:
                return True, f"{path} is a socket {self.account.name} can write to"
            return False, f"{path} is not a socket {self.account.name} can use: start the engine or fix DOCKER_HOST / the socket's group"
        if value.startswith("tcp://"):
            host, _sep, port = value[len("tcp://") :].rstrip("/").rpartition(":")
            try:
                socket.create_connection((host or "127.0.0.1", int(port or 2375)), timeout=5).close()
            except (OSError, ValueError) as exc:
                return False, f"DOCKER_HOST={value} is not reachable ({exc}): start the engine's TCP listener or fix DOCKER_HOST"
            return True, f"DOCKER_HOST={value} accepts connections"
        return True, f"DOCKER_HOST={value} (not checked: only unix:// and tcp:// are)"


def default_required(generation: str) -> list[str]:
    names = PATTERNS["v1"] + PATTERNS["v2"] if generation == "both" else PATTERNS[generation]
    return sorted(set(names))


def run_checks(
    probe: Probe, generation: str, required: list[str], reuse: Callable[[], list[Check] | None] | None = None
) -> tuple[CheckList, bool]:
    """Every check, in order; or, when ``reuse`` returns recorded checks after ``info``, those.

    Returns the checks and whether they were reused."""
    checks = CheckList(required)
    info = checks.run("info", probe.check_info)
    if info.passed and reuse is not None:
        recorded = reuse()
        if recorded is not None:
            checks.checks = [info, *(c for c in recorded if c.name != "info")]
            return checks, True
    # Host-side environment first: their details explain many of the failures below (and a failed info).
    checks.run("dev_net_tun", probe.check_tun)
    checks.run("dev_fuse", probe.check_fuse)
    checks.run("subuid_subgid", probe.check_subids)
    checks.run("docker_host", probe.check_docker_host)
    patterns = set(default_required(generation))
    if not info.passed:
        for name in ["run_rm_name", *sorted(patterns - {"info", "run_rm_name"})]:
            checks.skip(name, "`info` failed")
        return checks, False
    checks.run("run_rm_name", probe.check_run_rm_name)
    if "run_stdin" in patterns:
        checks.run("run_stdin", probe.check_run_stdin)
    checks.run("bind_mount", probe.check_bind_mount)
    checks.run("bind_mount_ro", probe.check_bind_mount_ro)
    checks.run("env", probe.check_env)
    checks.run("user_home", probe.check_user_home)
    checks.run("add_host_gateway", probe.check_add_host_gateway)
    probe.check_ps_and_stop(checks, generation if generation != "both" else "v1v2")
    checks.run("build", probe.check_build)
    if "build_file" in patterns:
        checks.run("build_file", probe.check_build_file)
    checks.run("build_buildkit", probe.check_build_buildkit)
    if "entrypoint" in patterns:
        checks.run("entrypoint", probe.check_entrypoint)
        checks.run("entrypoint_exec_bun", probe.check_entrypoint_exec_bun)
    if "mount_dev_null_file" in patterns:
        checks.run("mount_dev_null_file", probe.check_mount_dev_null_file)
        checks.run("mount_nested_rw", probe.check_mount_nested_rw)
    if "mount_file_ro" in patterns:
        checks.run("mount_file_ro", probe.check_mount_file_ro)
    checks.run("memory_limit", probe.check_memory)
    checks.run("cpu_limit", probe.check_cpus)
    checks.run("pids_limit", probe.check_pids)
    checks.run("hardening_flags", probe.check_hardening)
    checks.run("userns_keep_id", probe.check_keep_id)
    checks.run("bind_mount_ownership", probe.check_ownership)
    checks.run("rlimits", probe.check_rlimits)
    return checks, False


# ---------------------------------------------------------------- reuse of a recorded run
# Bump when a check is added or changes what it decides: older records are then not reused.
RECORD_FORMAT = 1
BIG_FILE = 8 * 1024 * 1024


def _file_digest(path: str) -> str:
    """Content hash of a regular file (size and mtime for a big binary); what a symlink points to.

    Some of these paths are the service user's (``~/.config/containers``): a symlink is never
    followed and nothing but a regular file is read (see _read_digest)."""
    try:
        st = os.lstat(path)
    except OSError:
        return "-"
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(path)
    if not stat.S_ISREG(st.st_mode):
        return f"mode:{st.st_mode:o}:{st.st_rdev}"
    return _read_digest(path)


def _read_digest(path: str) -> str:
    """Hash a regular file, checked on the open descriptor: a file swapped for a symlink or a FIFO
    after the look is refused, not followed or waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            return f"mode:{st.st_mode:o}:{st.st_rdev}"
        if st.st_size > BIG_FILE:
            return f"size:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        digest = hashlib.sha256()
        try:
            for block in iter(lambda: handle.read(1 << 16), b""):
                digest.update(block)
        except OSError as exc:
            return f"unreadable:{exc.errno}"
    return f"{st.st_mode:o}:{st.st_uid}:{st.st_gid}:{digest.hexdigest()}"


def _tree_digests(root: str) -> dict[str, str]:
    """Every file under ``root`` (symlinks not followed), path -> _file_digest."""
    found: dict[str, str] = {}
    if not os.path.isdir(root) or os.path.islink(root):
        return found
    for top, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            found[path] = _file_digest(path)
        if len(found) > 2000:
            found["(truncated)"] = str(len(found))
            break
    return found


def fingerprint(probe: Probe, executable: str) -> str:
    """What the checks depend on, hashed: see the option ``record``."""
    params = {k: v for k, v in probe.params.items() if k not in ("record", "reuse_max_age")}
    image = probe.cli(["image", "inspect", "--format", "{{.Id}}", probe.params["image"]], timeout=60)
    home = probe.account.home
    files: dict[str, str] = {"executable": executable, executable: _file_digest(executable)}
    for root in ("/etc/containers", os.path.join(home, ".config", "containers")):
        files.update(_tree_digests(root))
    for path in (
        "/etc/docker/daemon.json",
        os.path.join(home, ".config", "docker", "daemon.json"),
        "/etc/subuid",
        "/etc/subgid",
        "/dev/net/tun",
        "/dev/fuse",
    ):
        files[path] = _file_digest(path)
    try:
        info = stable_info(json.loads(probe.info_text))
    except ValueError:
        info = probe.info_text
    material = {
        "format": RECORD_FORMAT,
        "params": params,
        "user": [probe.account.name, probe.account.uid, probe.account.gid, home],
        "version": probe.version_text,
        "info": info,
        "image": image.stdout.strip() if image.ok else f"missing (exit {image.rc})",
        "files": files,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _safe_directory(path: str) -> str | None:
    """Why the record's directory cannot be trusted, or None."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory (a symlink is refused)"
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        return f"{path} is owned by uid {st.st_uid} or writable by others"
    return None


def read_record(path: str) -> dict | None:
    """The record at ``path``, or None when there is none or it cannot be trusted."""
    if _safe_directory(os.path.dirname(path) or ".") is not None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        st = os.fstat(handle.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        try:
            record = json.load(handle)
        except ValueError:
            return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def write_record(path: str, record: dict) -> None:
    """Write ``record`` owner-only, atomically, into a trusted directory (made 0700 if missing)."""
    directory = os.path.dirname(path) or "."
    if not os.path.lexists(directory):
        os.makedirs(directory, mode=0o700)
    problem = _safe_directory(directory)
    if problem:
        raise OSError(f"not writing the record: {problem}")
    fd, temp = tempfile.mkstemp(prefix=".runtime_compat-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1, sort_keys=True)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "image": {"type": "str", "required": True},
            "generation": {"type": "str", "choices": ["v1", "v2", "both"], "default": "v2"},
            "user": {"type": "str"},
            "executable": {"type": "str", "default": "docker"},
            "environment": {"type": "dict", "default": {}},
            "required": {"type": "list", "elements": "str"},
            "not_required": {"type": "list", "elements": "str", "default": []},
            "network": {"type": "str"},
            "limits": {
                "type": "dict",
                "default": {},
                "options": {
                    "memory": {"type": "int", "default": 256},
                    "cpus": {"type": "float", "default": 0.5},
                    "pids": {"type": "int", "default": 64},
                },
            },
            "timeout": {"type": "int", "default": 120},
            "record": {"type": "path"},
            "reuse_max_age": {"type": "int", "default": 86400},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        account = resolve_account(params["user"])
        runner = Runner(account, params["executable"], params["environment"])
        executable = runner.resolve()
    except RunnerError as exc:
        module.fail_json(msg=str(exc), changed=False, checks=[], summary={}, engine={})
    required = params["required"] if params["required"] is not None else default_required(params["generation"])
    required = [name for name in required if name not in params["not_required"]]
    if params["reuse_max_age"] < 0:
        module.fail_json(msg=f"reuse_max_age must be 0 or more seconds, not {params['reuse_max_age']}", changed=False)
    probe = Probe(module, account, runner)
    record_path = params["record"]
    state: dict = {}

    def reuse() -> list[Check] | None:
        state["fingerprint"] = fingerprint(probe, executable)
        record = read_record(record_path) if params["reuse_max_age"] > 0 else None
        if not record or record.get("fingerprint") != state["fingerprint"]:
            return None
        age = time.time() - float(record.get("time", 0))
        if not 0 <= age < params["reuse_max_age"]:
            return None
        state["record"] = record
        return [Check.from_dict(c) for c in record.get("checks", [])]

    try:
        checks, reused = run_checks(probe, params["generation"], required, reuse if record_path else None)
    finally:
        probe.cleanup()
    summary = checks.summary()
    engine = {
        "name": probe.facts.name,
        "version": probe.facts.version,
        "rootless": probe.facts.rootless,
        "cgroup_version": probe.facts.cgroup_version,
        "cgroup_driver": probe.facts.cgroup_driver,
        "storage_driver": probe.facts.storage_driver,
        "executable": executable,
        "version_text": probe.version_text,
    }
    result = {
        "changed": False,
        "checks": [c.as_dict() for c in checks.checks],
        "summary": summary,
        "engine": engine,
    }
    if reused:
        record = state["record"]
        result["checked_at"] = record["checked_at"]
        if record.get("limits") is not None:
            result["limits"] = record["limits"]
    else:
        result["checked_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if probe.limits_seen is not None:
            result["limits"] = dict(probe.limits_seen)
    result["reused"] = reused
    if record_path and not reused and "fingerprint" in state and not summary["required_failed"] and not module.check_mode:
        record = {
            "format": RECORD_FORMAT,
            "fingerprint": state["fingerprint"],
            "time": time.time(),
            "checked_at": result["checked_at"],
            "checks": result["checks"],
            "limits": result.get("limits"),
        }
        try:
            write_record(record_path, record)
        except OSError as exc:
            module.warn(f"runtime_compat could not record its results in {record_path}: {exc}")
    if summary["required_failed"]:
        failing = "; ".join(f"{c.name}: {c.detail}" for c in checks.checks if c.required and not c.passed)
        module.fail_json(msg=f"required checks failed: {failing}", **result)
    how = f" (reused from the full run of {result['checked_at']}: nothing they depend on changed)" if reused else ""
    module.exit_json(msg=f"{summary['passed']} of {summary['total']} checks passed; all required checks passed{how}", **result)


if __name__ == "__main__":
    main()
