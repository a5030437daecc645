#!/usr/bin/python
# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent_smoke
short_description: Smoke-test that a NanoClaw agent image honours its container contract
version_added: 0.1.0
description:
  - Runs an agent image once through the container CLI, as the NanoClaw service user, and checks
    the contract of the NanoClaw generation asked for.
  - V(v1) contract (NanoClaw 1.x, read from v1.2.53) - starts C(run -i --rm) with the mounts NanoClaw's host
    gives an agent (or a subset), writes the JSON input (prompt, groupFolder, chatJid, isMain) on stdin,
    reads stdout and extracts each JSON output between C(---NANOCLAW_OUTPUT_START---) and
    C(---NANOCLAW_OUTPUT_END---). As the real runner does, the agent writes its result, then a session
    update (C(status=success) with a null result), and then waits for follow-ups; once an output with
    C(status=success) arrives the module writes C(input/_close) into the IPC directory, as the host does
    when the agent is idle, and requires the agent to end within O(close_timeout) with exit code 0.
  - With O(project_dir) (the NanoClaw checkout) the runner source is mounted as the host mounts it - v1 a
    per-group copy of C(container/agent-runner/src) at C(/app/src), read-write (the image compiles it at
    start); v2 C(container/agent-runner/src) itself at C(/app/src), read-only, plus C(container/skills) at
    C(/app/skills) and C(container/CLAUDE.md) at C(/app/CLAUDE.md) when they exist. Without it v1 compiles
    the image's own copy (upstream's v1 image carries one) and v2 runs whatever the image has at
    C(/app/src) (upstream's v2 image has none - pass O(project_dir)).
  - Each way of failing has its own RV(failure) value and message - V(image_missing), V(timeout)
    (the container is killed and removed), V(no_markers), V(invalid_json), V(several_outputs) (only
    with O(several_outputs=fail)), V(status_error) (shows the agent's error), V(exit_code),
    V(not_closed) (the agent answered but did not end after C(input/_close)), and
    V(engine_error) when the engine itself could not run the container (exit 125, 126 or 127 and
    no output, for example an option it does not support), V(engine_missing) when the CLI is not on
    the user's PATH, V(bad_input) when O(project_dir) is not a NanoClaw checkout.
  - When the agent writes several results (NanoClaw streams intermediate results), the last one is
    the result by default and RV(outputs_count) says how many outputs there were.
  - V(v2) contract (NanoClaw 2.x, read from v2.0.64) - prepares what the host prepares for a session - a
    session directory with C(outbox/), C(inbound.db) (holding one pending chat message) and C(outbound.db),
    both SQLite in journal mode DELETE, mounted at C(/workspace); a group directory at C(/workspace/agent) with
    C(container.json) mounted read-only on top of it as a single file; C(/home/node/.claude) - starts the
    container with the C(nanoclaw-install) label and the v2 entrypoint, and waits until the runner has
    marked the message C(completed) in C(outbound.db)'s C(processing_ack) and touched
    C(/workspace/.heartbeat) (the runner touches it while it processes a message, not when idle). Then it
    stops the container with C(stop -t 1) and confirms that no container with its label remains.
    C(container.json) names the runner's built-in C(mock) provider by default (O(container_config)), so no
    credentials or network are needed. Failures - V(image_missing), V(exited_early), V(no_heartbeat),
    V(not_acknowledged), V(leftover_container).
  - Through NanoClaw's own C(docker) - O(service_unit) names the service's systemd unit; the CLI then runs
    with that unit's C(Environment=) (its C(PATH) puts the C(docker) wrapper nanoclaw.provision installs
    first, with the limits and hardening flags it adds), so the smoke test runs the agent exactly as the
    service will.
  - Secrets are accepted only in O(secrets) (C(no_log)); they go to the container on stdin inside
    the JSON input (older v1 agents read them there; v1.2.53 and v2 get credentials through OneCLI and
    read none), never on a command line, and never into the result.
  - The engine is the C(docker) or C(podman) CLI. To run the agent as a Kubernetes Job from the
    kubernetes role's template, use M(nanoclaw.provision.agent_smoke_job).
author:
  - nanoclaw.provision maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nanoclaw.provision.attributes
attributes:
  check_mode:
    support: partial
    details:
      - In check mode the module only checks that the CLI answers and the image exists; it does not
        start the agent.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Never reports C(changed). The containers it starts are removed, and the temporary
        directories it creates are deleted.
  platform:
    platforms: posix
options:
  image:
    description:
      - The agent image, already present locally (the module never pulls).
    type: str
    required: true
  contract:
    description:
      - Which NanoClaw generation's contract to check.
    type: str
    choices: [v1, v2]
    default: v1
  engine:
    description:
      - The container CLI. V(docker) is what NanoClaw calls (Docker, or Podman through a shim);
        V(podman) calls Podman directly. (A Kubernetes Job is M(nanoclaw.provision.agent_smoke_job)'s.)
    type: str
    choices: [docker, podman]
    default: docker
  executable:
    description:
      - Path or name of the CLI to run instead of the one O(engine) names, resolved on the user's
        PATH (C(~/.local/bin), C(~/bin), then the system directories).
    type: str
  user:
    description:
      - Run the CLI as this user (the NanoClaw service user), with that user's HOME, PATH and
        C(XDG_RUNTIME_DIR=/run/user/UID) when it exists. Default is the user the module runs as.
    type: str
  environment:
    description:
      - Extra environment for the CLI process, for example C(DOCKER_HOST) or C(PATH).
    type: dict
    default: {}
  input:
    description:
      - V(v1) - the JSON input. Merged over a default of C(prompt), C(groupFolder=smoke),
        C(chatJid=smoke@nanoclaw.provision.invalid) and C(isMain=false).
      - V(v2) - its C(prompt) is the text of the chat message queued in C(inbound.db).
    type: dict
    default: {}
  secrets:
    description:
      - V(v1) - secrets the agent receives in the C(secrets) key of its input (for example
        C(ANTHROPIC_API_KEY)). Never logged, never on a command line, never returned.
    type: dict
    default: {}
  mounts:
    description:
      - V(v1) - which of NanoClaw's standard mounts to give the container. Each gets a fresh
        directory under a temporary directory owned by O(user) and removed afterwards.
      - C(group) is C(/workspace/group), C(project) is C(/workspace/project) read-only (only when
        C(isMain) is true, as NanoClaw does) with C(/dev/null) mounted over its C(.env) and its
        C(store/) mounted read-write, C(claude) is C(/home/node/.claude), C(ipc) is
        C(/workspace/ipc) with C(messages), C(tasks) and C(input) (without it the module cannot write
        C(input/_close)), C(app_src) is a copy of the runner source at C(/app/src) (only with O(project_dir)).
    type: list
    elements: str
    choices: [group, project, claude, ipc, app_src]
    default: [group, project, claude, ipc, app_src]
  env:
    description:
      - Non-secret environment for the container (C(-e KEY=VALUE)); values are visible on the
        command line, so never put secrets here.
    type: dict
    default: {}
  container_user:
    description:
      - Passed as C(--user) together with C(-e HOME=/home/node), as NanoClaw does when the host uid
        is neither 0 nor 1000. Default is the image's user.
    type: str
  host_gateway:
    description:
      - Pass C(--add-host=host.docker.internal:host-gateway) as NanoClaw does on Linux.
    type: bool
    default: true
  extra_args:
    description:
      - More C(run) arguments, for example C(--userns=keep-id) or C(--network=none).
    type: list
    elements: str
    default: []
  name:
    description:
      - Container name. Default is C(nanoclaw-smoke-) and a random suffix.
    type: str
  timeout:
    description:
      - Seconds the V(v1) run may take before the container is killed and removed.
    type: int
    default: 300
  several_outputs:
    description:
      - What to do when the agent writes more than one output - use the V(last) one as the result,
        or V(fail).
    type: str
    choices: [last, fail]
    default: last
  session_dir:
    description:
      - V(v2) - a session directory to mount at C(/workspace) as it is (the module queues its message in
        its C(inbound.db) when there is one, and creates nothing else there). Default is a temporary
        directory owned by O(user), prepared as NanoClaw's host prepares one and removed afterwards.
    type: path
  container_config:
    description:
      - V(v2) - merged over C(provider=mock), C(assistantName=Smoke), C(groupName=smoke) and
        C(agentGroupId=smoke) into the C(container.json) the agent reads.
    type: dict
    default: {}
  project_dir:
    description:
      - The NanoClaw checkout whose C(container/agent-runner/src) is mounted at C(/app/src) as its host
        mounts it (see the description). Needed for upstream's v2 image, which carries no runner source.
    type: path
  close_timeout:
    description:
      - V(v1) - seconds the agent may take to end after the module wrote C(input/_close).
    type: int
    default: 30
  service_unit:
    description:
      - The NanoClaw service's systemd unit file (for example
        C(~nanoclaw/.config/systemd/user/nanoclaw-v2-<slug>.service)). Its C(Environment=) assignments
        become the CLI's environment, over the user's login environment; O(environment) wins over both.
        So C(docker) resolves to what the service runs - the wrapper on the unit's C(PATH).
    type: path
  install_slug:
    description:
      - V(v2) - value of the C(nanoclaw-install) label. Default is the first 8 hex digits of the
        SHA-1 of the session directory's physical path.
    type: str
  entrypoint:
    description:
      - V(v2) - the C(--entrypoint) NanoClaw v2 uses.
    type: str
    default: bash
  command:
    description:
      - V(v2) - the arguments after the image.
    type: list
    elements: str
    default: ['-c', 'exec bun run /app/src/index.ts']
  heartbeat_timeout:
    description:
      - V(v2) - seconds to wait for the smoke message to be processed (C(/workspace/.heartbeat) touched and
        the message marked completed).
    type: int
    default: 60
notes:
  - Runs each container with C(--rm) and a random name; on timeout or failure it removes the
    container with C(rm -f).
  - The default PATH for O(user) puts C(~/.local/bin) first, so a per-user C(docker) wrapper (for
    example one that execs C(podman)) is found the way a login shell would find it.
seealso:
  - module: nanoclaw.provision.runtime_compat
  - module: nanoclaw.provision.agent_smoke_job
"""

EXAMPLES = r"""
- name: Smoke-test the v1 agent image as the service user, with the checkout's runner source
  nanoclaw.provision.agent_smoke:
    image: nanoclaw-agent:latest
    user: nanoclaw
    project_dir: /home/nanoclaw/nanoclaw
  register: smoke

- name: Show how long the agent took to answer
  ansible.builtin.debug:
    msg: "first byte {{ smoke.timings.spawn_to_first_byte }} s, result {{ smoke.timings.spawn_to_result }} s"

- name: A v2 agent processes a message from its session DB and stops cleanly, through the service's docker wrapper
  nanoclaw.provision.agent_smoke:
    image: "nanoclaw-agent-v2-{{ nanoclaw_slug }}:latest"
    contract: v2
    user: nanoclaw
    project_dir: /home/nanoclaw/nanoclaw
    service_unit: "/home/nanoclaw/.config/systemd/user/nanoclaw-v2-{{ nanoclaw_slug }}.service"
    install_slug: "{{ nanoclaw_slug }}"
    heartbeat_timeout: 120

- name: Through rootless Podman directly, without the network
  nanoclaw.provision.agent_smoke:
    image: localhost/nanoclaw-agent:latest
    engine: podman
    user: nanoclaw
    host_gateway: false
    extra_args: [--network=none, --userns=keep-id]
"""

RETURN = r"""
failure:
  description: Why the smoke test failed, or null when it passed.
  returned: always
  type: str
  sample: status_error
container_name:
  description: Name of the container the module started.
  returned: always
  type: str
  sample: nanoclaw-smoke-3f9c2a1b
executable:
  description: The CLI the module ran, as resolved for O(user).
  returned: always
  type: str
  sample: /usr/bin/docker
exit_code:
  description: Exit code of the C(run) command (the agent's, or the engine's 125-127); null after a timeout.
  returned: when the container was started
  type: int
  sample: 0
output:
  description: V(v1) - the agent's result (the last output, or the only one).
  returned: when an output was parsed
  type: dict
  sample: {"status": "success", "result": "OK", "newSessionId": "3c1d"}
outputs_count:
  description: V(v1) - how many marker-delimited outputs the agent wrote.
  returned: when contract is v1 and the container was started
  type: int
  sample: 1
agent_error:
  description: V(v1) - the C(error) field of an output with C(status=error).
  returned: when failure is status_error
  type: str
stdout_tail:
  description: Last lines of the container's stdout (secrets masked).
  returned: when the container was started
  type: str
stderr_tail:
  description: Last lines of the CLI's stderr (secrets masked).
  returned: when the container was started
  type: str
closed:
  description: V(v1) - whether the module wrote C(input/_close) after the agent's answer.
  returned: when contract is v1 and the container was started
  type: bool
runner_source:
  description: Where C(/app/src) came from - V(mounted) from O(project_dir), or the V(image)'s own.
  returned: when the container was started
  type: str
acknowledged:
  description: V(v2) - the smoke message's C(processing_ack) status in C(outbound.db) (V(completed) when processed).
  returned: when contract is v2 and the container was started
  type: str
replies:
  description: V(v2) - texts the agent wrote to C(messages_out) (the mock provider's answers are not delivered, so none).
  returned: when contract is v2 and the container was started
  type: list
  elements: str
removed:
  description: Whether no container of this run remains (checked after a timeout or stop).
  returned: when the container was started
  type: bool
  sample: true
heartbeat:
  description: V(v2) - whether C(/workspace/.heartbeat) was touched before the deadline.
  returned: when contract is v2 and the container was started
  type: bool
leftover_containers:
  description: V(v2) - containers still carrying the C(nanoclaw-install) label after the stop.
  returned: when contract is v2 and the container was started
  type: list
  elements: str
install_slug:
  description: V(v2) - the C(nanoclaw-install) label value used.
  returned: when contract is v2
  type: str
timings:
  description:
    - Seconds from spawning the CLI - C(spawn_to_first_byte) (first stdout byte),
      C(spawn_to_result) (v1 - end marker of the first result; v2 - the message marked completed),
      C(total) (until the container is gone). V(v1) also returns C(result_to_exit) (from writing
      C(input/_close) to the agent's end), V(v2) C(spawn_to_heartbeat) and C(stop) (the stop command).
  returned: when the container was started
  type: dict
  sample: {"spawn_to_first_byte": 0.61, "spawn_to_result": 0.64, "total": 0.92}
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nanoclaw.provision.plugins.module_utils import _v2session as v2s
from ansible_collections.nanoclaw.provision.plugins.module_utils._contract import (
    DEFAULT_V2_CONFIG,
    heartbeat_after,
    is_session_update,
    judge_v1,
    payload,
    seconds,
    tail,
)
from ansible_collections.nanoclaw.provision.plugins.module_utils._engine import CliEngine, ContainerSpec, Engine, Mount
from ansible_collections.nanoclaw.provision.plugins.module_utils._runner import (
    Account,
    Runner,
    RunnerError,
    parse_unit_environment,
    resolve_account,
)
from ansible_collections.nanoclaw.provision.plugins.module_utils._sentinel import SentinelParser

V1_MOUNTS = {
    "group": ("group", "/workspace/group", False),
    "project": ("project", "/workspace/project", True),
    "claude": ("claude", "/home/node/.claude", False),
    "ipc": ("ipc", "/workspace/ipc", False),
    "app_src": ("agent-runner-src", "/app/src", False),
}
RUNNER_SRC = os.path.join("container", "agent-runner", "src")
# docker run's own exit codes: 125 the engine failed, 126 cannot invoke, 127 not found.
ENGINE_EXIT_CODES = (125, 126, 127)


def make_private_dir(account: Account, prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o700)
    os.chown(path, account.uid, account.gid)
    return path


def chown_tree(path: str, account: Account) -> None:
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), account.uid, account.gid)
    os.chown(path, account.uid, account.gid)


def runner_source(project_dir: str | None) -> str | None:
    """``container/agent-runner/src`` of the NanoClaw checkout, or None without one."""
    if not project_dir:
        return None
    path = os.path.join(project_dir, RUNNER_SRC)
    if not os.path.isdir(path):
        raise ValueError(f"project_dir {project_dir} has no {RUNNER_SRC}: it must be a NanoClaw checkout")
    return path


def v1_mounts(base: str, wanted: list[str], is_main: bool, runner_src: str | None) -> list[Mount]:
    """The mounts NanoClaw v1.2.53's host gives an agent (src/container-runner.ts, buildVolumeMounts), in its order."""
    mounts = []
    for key in wanted:
        if key == "project" and not is_main:
            continue
        if key == "app_src" and runner_src is None:
            # Without the checkout the image's own copy of the runner (its /app/src) is compiled.
            continue
        sub, target, read_only = V1_MOUNTS[key]
        host = os.path.join(base, sub)
        if key == "app_src":
            # A per-group copy of container/agent-runner/src, read-write (the agent may change it).
            shutil.copytree(runner_src, host, symlinks=True)
        else:
            os.makedirs(host, mode=0o700, exist_ok=True)
        mounts.append(Mount(host, target, read_only))
        if key == "ipc":
            for child in ("messages", "tasks", "input"):
                os.makedirs(os.path.join(host, child), mode=0o700, exist_ok=True)
        if key == "project":
            # The project root read-only, its .env shadowed by /dev/null (a single-file mount) and
            # store/ read-write inside it (a read-write mount nested under a read-only one).
            with open(os.path.join(host, ".env"), "w", encoding="utf-8") as handle:
                handle.write("# nanoclaw.provision smoke: the agent must never read this file\n")
            os.makedirs(os.path.join(host, "store"), mode=0o700, exist_ok=True)
            mounts.append(Mount("/dev/null", target + "/.env", True))
            mounts.append(Mount(os.path.join(host, "store"), target + "/store", False))
    return mounts


def base_spec(params: dict, name: str) -> ContainerSpec:
    env = {str(k): str(v) for k, v in params["env"].items()}
    if params["container_user"]:
        env.setdefault("HOME", "/home/node")
    return ContainerSpec(
        name=name,
        image=params["image"],
        env=env,
        user=params["container_user"],
        host_gateway=params["host_gateway"],
        extra_args=list(params["extra_args"]),
    )


def remove_and_confirm(engine: Engine, name: str) -> bool:
    engine.remove(name)
    return engine.wait_gone(name)


def write_owned(path: str, account: Account, content: str = "") -> None:
    """A file of ``account``'s, as NanoClaw's host (running as that user) writes it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, content.encode())
        os.fchown(fd, account.uid, account.gid)
    finally:
        os.close(fd)


def smoke_v1(module: AnsibleModule, engine: Engine, account: Account, name: str) -> dict:
    params = module.params
    v1_input = payload(params["input"], params["secrets"])
    src = runner_source(params["project_dir"])
    base = make_private_dir(account, "nanoclaw-smoke-")
    try:
        spec = base_spec(params, name)
        spec.interactive = True
        spec.mounts = v1_mounts(base, params["mounts"], bool(v1_input.get("isMain")), src)
        chown_tree(base, account)
        close_file = os.path.join(base, "ipc", "input", "_close") if "ipc" in params["mounts"] else None
        parser = SentinelParser()
        marks: dict[str, float] = {}
        started = time.monotonic()

        def on_stdout(chunk: str) -> None:
            for output in parser.feed(chunk):
                if "result" not in marks and not is_session_update(output):
                    marks["result"] = time.monotonic() - started
                # As NanoClaw's host does once the agent has answered (and gone idle): the session
                # ends through the IPC directory, input/_close. The runner removes a _close that
                # is there before it starts, so it is written only now.
                if close_file and "closed" not in marks and output.valid and output.value.get("status") == "success":
                    write_owned(close_file, account)
                    marks["closed"] = time.monotonic()

        def deadline() -> float | None:
            return marks["closed"] + params["close_timeout"] if "closed" in marks else None

        done = engine.run_attached(spec, json.dumps(v1_input), float(params["timeout"]), on_stdout, deadline)
        result: dict = {"exit_code": done.rc, "stdout_tail": tail(done.stdout), "stderr_tail": tail(done.stderr)}
        result["runner_source"] = "mounted" if src and "app_src" in params["mounts"] else "image"
        if done.timed_out:
            result["exit_code"] = None
            result["removed"] = remove_and_confirm(engine, name)
            if "closed" in marks:
                failure = "not_closed"
                msg = (
                    f"the agent answered but did not end within {params['close_timeout']} s of input/_close;"
                    f" container {name} killed and removed"
                )
            else:
                failure, msg = "timeout", f"the agent did not finish within {params['timeout']} s; container {name} killed and removed"
            result.update(judge_v1(parser.outputs, None, params["several_outputs"])[2])
        else:
            result["removed"] = engine.wait_gone(name)
            failure, msg, extra = judge_v1(parser.outputs, done.rc, params["several_outputs"])
            result.update(extra)
            if failure == "no_markers" and done.rc in ENGINE_EXIT_CODES and not done.stdout.strip():
                failure, msg = "engine_error", f"the engine could not run the container (exit {done.rc}): {done.tail()}"
            elif failure == "no_markers" and done.rc not in (0, None):
                msg += f"; it exited with code {done.rc}: {done.tail()}"
            if failure is None and "closed" in marks:
                msg += f"; it ended {time.monotonic() - marks['closed']:.2f} s after input/_close"
        result["outputs_count"] = len(parser.outputs)
        result["closed"] = "closed" in marks
        result["timings"] = {
            "spawn_to_first_byte": seconds(done.first_byte),
            "spawn_to_result": seconds(marks.get("result")),
            "result_to_exit": seconds(started + done.seconds - marks["closed"]) if "closed" in marks and not done.timed_out else None,
            "total": seconds(time.monotonic() - started),
        }
        result.update(failure=failure, msg=msg)
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def install_slug(path: str) -> str:
    return hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:8]


def prepare_v2(params: dict, account: Account, base: str) -> tuple[str, list[Mount]]:
    """The session directory and mounts NanoClaw v2.0.64's host gives an agent (src/container-runner.ts, buildMounts)."""
    session = params["session_dir"] or os.path.join(base, "session")
    if not params["session_dir"]:
        os.makedirs(session, mode=0o700)
        v2s.init_session(session)
    group = os.path.join(base, "group")
    claude = os.path.join(base, "claude-shared")
    for path in (group, claude):
        os.makedirs(path, mode=0o700)
    config = os.path.join(group, "container.json")
    with open(config, "w", encoding="utf-8") as handle:
        json.dump({**DEFAULT_V2_CONFIG, **params["container_config"]}, handle)
    mounts = [
        Mount(session, "/workspace"),
        Mount(group, "/workspace/agent"),
        # A single file, read-only, nested on the read-write group directory.
        Mount(config, "/workspace/agent/container.json", True),
    ]
    project = params["project_dir"]
    if project and os.path.isfile(os.path.join(project, "container", "CLAUDE.md")):
        mounts.append(Mount(os.path.join(project, "container", "CLAUDE.md"), "/app/CLAUDE.md", True))
    mounts.append(Mount(claude, "/home/node/.claude"))
    src = runner_source(project)
    if src:
        mounts.append(Mount(src, "/app/src", True))
    if project and os.path.isdir(os.path.join(project, "container", "skills")):
        mounts.append(Mount(os.path.join(project, "container", "skills"), "/app/skills", True))
    chown_tree(base, account)
    return session, mounts


def smoke_v2(module: AnsibleModule, engine: Engine, account: Account, name: str) -> dict:
    params = module.params
    base = make_private_dir(account, "nanoclaw-smoke-v2-")
    try:
        session, mounts = prepare_v2(params, account, base)
        slug = params["install_slug"] or install_slug(session)
        message_id = f"smoke-{uuid.uuid4().hex[:12]}"
        queued = v2s.write_message(session, message_id, str(payload(params["input"], params["secrets"])["prompt"]))
        # The host process (the service user) owns what it writes.
        chown_tree(session, account)
        spec = base_spec(params, name)
        spec.mounts = mounts
        spec.labels = {"nanoclaw-install": slug}
        spec.entrypoint = params["entrypoint"]
        spec.command = list(params["command"])
        heartbeat = os.path.join(session, ".heartbeat")
        # The host removes an orphan heartbeat before it starts a container.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(heartbeat)
        wall_start = time.time() - 1  # mtime granularity
        started = time.monotonic()
        proc = engine.start(spec)
        seen_at = acked_at = None
        ack = None
        deadline = started + params["heartbeat_timeout"]
        while time.monotonic() < deadline and proc.poll() is None:
            if seen_at is None and heartbeat_after(heartbeat, wall_start):
                seen_at = time.monotonic() - started
            if acked_at is None and queued:
                ack = v2s.ack_status(session, message_id)
                if ack == "completed":
                    acked_at = time.monotonic() - started
            if seen_at is not None and (acked_at is not None or not queued):
                break
            time.sleep(0.2)
        if seen_at is None and heartbeat_after(heartbeat, wall_start):
            seen_at = time.monotonic() - started
        ack = v2s.ack_status(session, message_id) if queued else None
        exited_early = proc.poll() is not None
        stop_started = time.monotonic()
        stopped = engine.stop(name, 1)
        stop_seconds = time.monotonic() - stop_started
        try:
            out, err = proc.communicate(timeout=60)
        except Exception:
            proc.kill()
            out, err = proc.communicate()
        gone = engine.wait_gone(name)
        leftovers = engine.names_with_label(f"nanoclaw-install={slug}")
        out_text = out.decode("utf-8", "replace")
        err_text = err.decode("utf-8", "replace")
        result = {
            "install_slug": slug,
            "exit_code": proc.returncode,
            "heartbeat": seen_at is not None,
            "acknowledged": ack,
            "replies": v2s.replies(session),
            "leftover_containers": leftovers,
            "removed": gone and not leftovers,
            "runner_source": "mounted" if params["project_dir"] else "image",
            "stdout_tail": tail(out_text),
            "stderr_tail": tail(err_text),
            "timings": {
                "spawn_to_first_byte": None,
                "spawn_to_heartbeat": seconds(seen_at),
                "spawn_to_result": seconds(acked_at),
                "stop": seconds(stop_seconds),
                "total": seconds(time.monotonic() - started),
            },
        }
        for leftover in leftovers:
            engine.remove(leftover)
        if exited_early and (seen_at is None or ack != "completed"):
            failure, msg = (
                "exited_early",
                f"the container exited with code {proc.returncode} before it had processed the smoke message: {tail(err_text, 5)}",
            )
        elif seen_at is None:
            failure, msg = "no_heartbeat", f"/workspace/.heartbeat was not touched within {params['heartbeat_timeout']} s"
        elif ack != "completed":
            failure = "not_acknowledged"
            msg = (
                f"the agent touched its heartbeat but did not mark message {message_id} completed in outbound.db"
                f" (processing_ack: {ack or 'none'}) within {params['heartbeat_timeout']} s"
                if queued
                else f"the session directory {session} has no inbound.db with messages_in: the smoke message could not be queued"
            )
        elif leftovers or not gone:
            failure = "leftover_container"
            msg = f"containers labelled nanoclaw-install={slug} remain after stop -t 1: {', '.join(leftovers) or name}"
        else:
            failure, msg = (
                None,
                f"message processed (processing_ack completed) after {acked_at:.2f} s, heartbeat after {seen_at:.2f} s;"
                f" stop -t 1 took {stop_seconds:.2f} s (exit {stopped.rc}); no labelled container remains",
            )
        result.update(failure=failure, msg=msg)
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "image": {"type": "str", "required": True},
    "contract": {"type": "str", "choices": ["v1", "v2"], "default": "v1"},
    "engine": {"type": "str", "choices": ["docker", "podman"], "default": "docker"},
    "executable": {"type": "str"},
    "user": {"type": "str"},
    "environment": {"type": "dict", "default": {}},
    "input": {"type": "dict", "default": {}},
    "secrets": {"type": "dict", "default": {}, "no_log": True},
    "mounts": {"type": "list", "elements": "str", "choices": list(V1_MOUNTS), "default": list(V1_MOUNTS)},
    "env": {"type": "dict", "default": {}},
    "container_user": {"type": "str"},
    "host_gateway": {"type": "bool", "default": True},
    "extra_args": {"type": "list", "elements": "str", "default": []},
    "name": {"type": "str"},
    "timeout": {"type": "int", "default": 300},
    "several_outputs": {"type": "str", "choices": ["last", "fail"], "default": "last"},
    "session_dir": {"type": "path"},
    "container_config": {"type": "dict", "default": {}},
    "install_slug": {"type": "str"},
    "entrypoint": {"type": "str", "default": "bash"},
    "command": {"type": "list", "elements": "str", "default": ["-c", "exec bun run /app/src/index.ts"]},
    "heartbeat_timeout": {"type": "int", "default": 60},
    "project_dir": {"type": "path"},
    "close_timeout": {"type": "int", "default": 30},
    "service_unit": {"type": "path"},
}


def cli_runner(params: dict[str, Any]) -> tuple[Account, Runner, str]:
    """The account, the CLI runner with its environment, and the resolved CLI; RunnerError when there is none."""
    account = resolve_account(params["user"])
    environment = {}
    if params["service_unit"]:
        # What NanoClaw's service runs `docker` with: its unit's Environment= (the PATH that
        # puts the provisioned docker wrapper first, DOCKER_HOST), over the user's login one.
        # A user unit lives in the service user's home: it is read as that user, never as root.
        read = Runner(account, "cat").run(["--", params["service_unit"]], timeout=30)
        if not read.ok:
            raise RunnerError(f"cannot read service_unit {params['service_unit']} as {account.name}: {read.tail()}")
        environment = parse_unit_environment(read.stdout)
    environment.update({str(k): str(v) for k, v in params["environment"].items()})
    runner = Runner(account, params["executable"] or params["engine"], environment)
    return account, runner, runner.resolve()


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    name = params["name"] or f"nanoclaw-smoke-{uuid.uuid4().hex[:8]}"
    try:
        account, runner, executable = cli_runner(params)
    except RunnerError as exc:
        module.fail_json(msg=str(exc), failure="engine_missing", container_name=name, executable=None, changed=False)
    engine: Engine = CliEngine(runner)
    base = {"changed": False, "container_name": name, "executable": executable}
    inspected = engine.inspect_image(params["image"])
    if not inspected.ok:
        missing = any(word in inspected.stderr.lower() for word in ("no such image", "image not known", "not found"))
        module.fail_json(
            msg=(
                f"image {params['image']} is not present for user {account.name} ({executable}); build or load it first"
                if missing
                else f"{executable} image inspect failed: {inspected.tail()}"
            ),
            failure="image_missing" if missing else "engine_error",
            **base,
        )
    if module.check_mode:
        module.exit_json(
            msg=f"check mode: {executable} answers and image {params['image']} is present; agent not started", failure=None, **base
        )
    try:
        result = smoke_v2(module, engine, account, name) if params["contract"] == "v2" else smoke_v1(module, engine, account, name)
    except ValueError as exc:
        module.fail_json(msg=str(exc), failure="bad_input", **base)
    result.update(base)
    if result["failure"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
