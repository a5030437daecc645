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
  - The engine is the C(docker) or C(podman) CLI, or V(kubernetes) - the Job mode below.
  - Job mode (O(engine=kubernetes)) - reads the agent Job template the
    C(nanoclaw.provision.kubernetes) role publishes (ConfigMap O(job_template_configmap), key
    C(job-<group>.yaml)) or takes O(job_template), sets the image, O(env) and
    O(pod_security_context), creates the Job (it mounts the group's claims), waits until the agent
    container runs, writes the JSON input to its stdin through the API (C(attach); the template has
    C(stdin) and C(stdinOnce)), follows the pod log, parses the sentinel output as the container
    mode does, and deletes the Job (foreground, with its pod) unless O(keep_job). A pod log merges
    stdout and stderr line by line, so lines of the agent's stderr can land between the markers;
    when the text between them is not JSON but exactly one of its lines is a JSON object, that
    line is the output and RV(interleaved_lines) counts the others.
    Failures of its own - V(api_error) (kubeconfig, connection, RBAC, missing template),
    V(job_rejected) (the Job controller could not create the pod, for example the quota or Pod
    Security), V(image_missing) and V(pod_error) (the container cannot start), V(timeout), then the
    output failures of the container mode.
  - Job mode, V(v2) contract - the template must be a v2 one (the kubernetes role's
    C(nanoclaw_kubernetes_generation=v2); a template of the other generation fails with
    V(api_error) naming the variable). With O(session_path) and O(group_path) (both required), the
    module prepares a session folder in the sessions claim as v2's host does, queues the smoke
    message in its C(inbound.db), creates the Job with C(NANOCLAW_SESSION) naming the folder (the
    template mounts it at C(/workspace)), waits until the runner has touched C(.heartbeat) and
    marked the message C(completed) in C(outbound.db), then deletes the Job and removes what it
    made. Failures - V(exited_early), V(no_heartbeat), V(not_acknowledged), and those of Job mode.
  - IPC round trip (Job mode, O(ipc_path) set) - after the agent's result, writes
    C(input/<ms>-smoke.json) (a JSON object with C(type=message) and the O(ipc_message) as C(text))
    into the group's IPC claim as the host sees it, waits for the agent's reply in C(messages/), then writes C(input/_close) and
    requires the agent to end. Failures - V(ipc_no_reply), V(ipc_not_closed).
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
        start the agent. In Job mode it reads the template and creates the Job as a server-side dry
        run (admission, quota and RBAC are checked; nothing is created).
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Never reports C(changed). The containers and Jobs it starts are removed, and the temporary
        directories it creates are deleted.
  platform:
    platforms: posix
options:
  image:
    description:
      - The agent image, already present locally (the module never pulls). In Job mode it replaces
        the template's image, and the node's C(imagePullPolicy) decides.
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
        V(podman) calls Podman directly. V(kubernetes) runs the agent as a Job (V(v2) needs
        O(session_path) and O(group_path)); O(executable), O(user), O(environment), O(mounts), O(container_user),
        O(host_gateway) and O(extra_args) do not apply to it.
    type: str
    choices: [docker, podman, kubernetes]
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
        command line (in Job mode, in the Job), so never put secrets here.
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
      - Container name. Default is C(nanoclaw-smoke-) and a random suffix. In Job mode the Job's
        name; default is the template's C(generateName).
    type: str
  timeout:
    description:
      - Seconds the V(v1) run may take before the container is killed and removed (in Job mode,
        from creating the Job until the agent ends; the Job is deleted after a timeout).
    type: int
    default: 300
  kubeconfig:
    description:
      - Job mode - the kubeconfig to use. Default is C(KUBECONFIG) or C(~/.kube/config).
    type: path
  context:
    description:
      - Job mode - the kubeconfig context. Default is the current context.
    type: str
  namespace:
    description:
      - Job mode - the namespace the kubernetes role manages.
    type: str
    default: nanoclaw
  group:
    description:
      - Job mode - the group whose Job template (and so whose claims) the Job uses.
    type: str
    default: main
  job_template_configmap:
    description:
      - Job mode - the ConfigMap holding the templates, one key C(job-<group>.yaml) per group.
    type: str
    default: nanoclaw-agent-job-template
  job_template:
    description:
      - Job mode - a Job manifest to use instead of reading the ConfigMap.
    type: dict
  pod_security_context:
    description:
      - Job mode - merged into the pod's C(securityContext), for example C(runAsUser) and
        C(runAsGroup) as OpenShift's C(restricted-v2) SCC assigns them to a template rendered with
        C(nanoclaw_kubernetes_openshift=true).
    type: dict
    default: {}
  node_selector:
    description:
      - Job mode - labels merged into the pod's C(nodeSelector), to run the agent on a given node
        (for example C(kubernetes.io/hostname)) on a cluster of several. The template's own selector
        (the kubernetes role's C(nanoclaw_kubernetes_node_name)) is kept unless a key is the same.
    type: dict
    default: {}
  warm:
    description:
      - Job mode, V(v1) - take a running agent of the group's warm pool (the kubernetes role's
        C(nanoclaw_kubernetes_warm_pool)) instead of creating a Job - claimed by labelling its pod
        C(nanoclaw.dev/claimed) under the pod's resourceVersion, so two sessions never share one -
        and start a new member from the ConfigMap's C(warm-<group>.yaml) at once. When no member
        runs, a new Job is created as without O(warm) (RV(warm) is then false). O(image) must be the
        pool's image; O(env), O(pod_security_context), O(node_selector), O(name) and O(job_template)
        cannot apply to a running agent and are refused.
    type: bool
    default: false
  keep_job:
    description:
      - Job mode - leave the Job (and its pod) in place for inspection instead of deleting it; the
        template's C(ttlSecondsAfterFinished) still applies.
    type: bool
    default: false
  ipc_path:
    description:
      - Job mode - the directory backing the group's IPC claim, as this host sees it (a hostPath or
        local volume on a single node, an NFS mount). When set, the module does the IPC round trip.
        C(input), C(messages) and C(tasks) are created in it when missing, owned like it; the agent's
        user must be able to write there (the claim directory owned by it, or group-writable by its
        group, for example group 0 on OpenShift).
    type: path
  session_path:
    description:
      - Job mode, V(v2) - the directory backing the group's sessions claim, as this host sees it. The
        module makes the session folder C(smoke-<id>) there (C(outbox/), C(inbound.db) with the smoke
        message, C(outbound.db)) and the group's C(.claude-shared) when missing, owned like the
        directory, and removes what it made afterwards; the Job mounts the folder at C(/workspace).
    type: path
  group_path:
    description:
      - Job mode, V(v2) - the directory backing the group's claim, as this host sees it. When it has
        no C(container.json) (the template mounts one read-only), the module writes one from
        O(container_config) and removes it afterwards; an existing one is used as it is.
    type: path
  ipc_message:
    description:
      - Job mode - the text of the follow-up message of the IPC round trip.
    type: str
    default: IPC round trip from nanoclaw.provision
  ipc_timeout:
    description:
      - Job mode - seconds to wait for the agent's reply in C(messages/), and then for it to end
        after C(_close).
    type: int
    default: 60
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
requirements:
  - The C(kubernetes) Python package on the host the module runs on, for O(engine=kubernetes).
notes:
  - Runs each container with C(--rm) and a random name; on timeout or failure it removes the
    container with C(rm -f).
  - Job mode needs, in the namespace - C(configmaps) get (unless O(job_template)), C(jobs) create,
    get and delete, C(pods) list, C(pods/attach) create (the input goes to stdin), C(pods/log) get,
    C(events) list; the kubernetes role's controller Role grants these.
  - The default PATH for O(user) puts C(~/.local/bin) first, so a per-user C(docker) wrapper (for
    example one that execs C(podman)) is found the way a login shell would find it.
seealso:
  - module: nanoclaw.provision.runtime_compat
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

- name: The agent as a Kubernetes Job from the kubernetes role's template, with the IPC round trip
  nanoclaw.provision.agent_smoke:
    image: registry.example.internal/nanoclaw-agent:1.2.3
    engine: kubernetes
    kubeconfig: ~/.kube/nanoclaw.kubeconfig
    namespace: nanoclaw
    group: main
    ipc_path: /var/lib/nanoclaw/volumes/nanoclaw/nanoclaw-ipc-main
  register: job_smoke

- name: Show the Job latencies
  ansible.builtin.debug:
    msg: >-
      running after {{ job_smoke.timings.create_to_running }} s,
      result after {{ job_smoke.timings.create_to_parsed }} s,
      IPC reply after {{ job_smoke.ipc.reply_seconds }} s

- name: As OpenShift's restricted-v2 SCC would run a template rendered with nanoclaw_kubernetes_openshift
  nanoclaw.provision.agent_smoke:
    image: registry.example.internal/nanoclaw-agent:1.2.3
    engine: kubernetes
    namespace: nanoclaw
    pod_security_context:
      runAsUser: 1000650000
      runAsGroup: 0

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
warm:
  description: Job mode with O(warm) - whether a member of the warm pool ran the session (false - none was running, a new Job did).
  returned: when engine is kubernetes and warm is true
  type: bool
warm_topped_up:
  description: Job mode with O(warm) - whether the new member of the pool was created (C(warm_top_up_error) says why not).
  returned: when a warm agent was claimed
  type: bool
session:
  description: Job mode, V(v2) - the session folder's name in the sessions claim (removed afterwards).
  returned: when engine is kubernetes and contract is v2
  type: str
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
    - Job mode - seconds from the create request - C(create_to_running) (the agent container seen
      running), C(create_to_parsed) (the end marker of its first output read from the pod log),
      C(running_to_parsed), C(create_to_exit) (the container terminated) and C(total) (until the
      Job and its pod are gone). V(v2) - C(create_to_running) (null when the runner was done before
      the API reported its container running), C(create_to_heartbeat), C(create_to_result) (the
      message marked completed) and C(total). With O(warm) - C(claim) (finding and claiming a warm
      agent), and the others count from the claim instead of the create request.
  returned: when the container or Job was started
  type: dict
  sample: {"spawn_to_first_byte": 0.61, "spawn_to_result": 0.64, "total": 0.92}
job_name:
  description: Job mode - the name of the Job the module created.
  returned: when engine is kubernetes and the Job was created
  type: str
  sample: nanoclaw-main-x7k2p
interleaved_lines:
  description: Job mode - lines of other output (the agent's stderr) found between the markers in the pod log and set aside.
  returned: when engine is kubernetes and there were any
  type: int
started_at:
  description: Job mode - when the module asked for the Job (seconds since the epoch).
  returned: when engine is kubernetes and the Job was created
  type: float
ended_at:
  description: Job mode - when the Job and its pod were gone (seconds since the epoch).
  returned: when engine is kubernetes and the Job was created
  type: float
pod_name:
  description: Job mode - the agent pod.
  returned: when engine is kubernetes and the pod was created
  type: str
node_name:
  description: Job mode - the node the scheduler put the agent pod on (null until it is bound).
  returned: when engine is kubernetes and the Job was created
  type: str
ipc:
  description:
    - Job mode with O(ipc_path) - C(sent) (the input file), C(reply_file) and C(reply) (the agent's
      message from C(messages/)), C(reply_outputs) (the results the agent wrote after the
      follow-up; its session updates, whose C(result) is null, are left out, as whether the last one
      is in the log when the pod ends is a matter of timing), C(reply_seconds) (from writing the
      input to seeing the reply), C(closed) (the agent ended after C(_close)), C(input_left)
      (files still in C(input/)).
  returned: when engine is kubernetes and ipc_path is set and the agent answered
  type: dict
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nanoclaw.provision.plugins.module_utils import _kubejob as kj
from ansible_collections.nanoclaw.provision.plugins.module_utils import _v2session as v2s
from ansible_collections.nanoclaw.provision.plugins.module_utils._engine import CliEngine, ContainerSpec, Engine, Mount
from ansible_collections.nanoclaw.provision.plugins.module_utils._runner import (
    Account,
    Runner,
    RunnerError,
    parse_unit_environment,
    resolve_account,
)
from ansible_collections.nanoclaw.provision.plugins.module_utils._sentinel import SentinelParser

DEFAULT_INPUT = {
    "prompt": "Reply with the single word OK. (nanoclaw.provision smoke test)",
    "groupFolder": "smoke",
    "chatJid": "smoke@nanoclaw.provision.invalid",
    "isMain": False,
}
V1_MOUNTS = {
    "group": ("group", "/workspace/group", False),
    "project": ("project", "/workspace/project", True),
    "claude": ("claude", "/home/node/.claude", False),
    "ipc": ("ipc", "/workspace/ipc", False),
    "app_src": ("agent-runner-src", "/app/src", False),
}
# What the v2 runner reads from container.json when the smoke writes it: the
# runner's built-in mock provider answers without credentials or network.
DEFAULT_V2_CONFIG = {"provider": "mock", "assistantName": "Smoke", "groupName": "smoke", "agentGroupId": "smoke"}
RUNNER_SRC = os.path.join("container", "agent-runner", "src")
TAIL_LINES = 20
# docker run's own exit codes: 125 the engine failed, 126 cannot invoke, 127 not found.
ENGINE_EXIT_CODES = (125, 126, 127)


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


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


def is_session_update(output) -> bool:
    """The output a v1 runner writes after each query: success without a result (index.ts, writeOutput after runQuery)."""
    return output.valid and output.value.get("status") == "success" and output.value.get("result") is None


def judge_v1(outputs: list, rc: int | None, several: str) -> tuple[str | None, str, dict]:  # noqa: PLR0911 - one return per failure kind
    """(failure, message, extra result keys) from the parsed outputs and exit code.

    The result is the last output that carries one; session updates (success with a null result)
    only count as the result when the agent wrote nothing else.
    """
    extra: dict = {"outputs_count": len(outputs)}
    if not outputs:
        return "no_markers", "the agent wrote no output between ---NANOCLAW_OUTPUT_START--- and ---NANOCLAW_OUTPUT_END---", extra
    results = [o for o in outputs if not is_session_update(o)]
    last = (results or outputs)[-1]
    if not last.valid:
        return "invalid_json", f"the agent's output is not a JSON object: {last.error}", extra
    extra["output"] = last.value
    if len(results) > 1 and several == "fail":
        return "several_outputs", f"the agent wrote {len(results)} outputs and several_outputs=fail", extra
    if last.value.get("status") != "success":
        error = str(last.value.get("error") or "")
        extra["agent_error"] = error
        return "status_error", f"the agent answered status={last.value.get('status')!r}: {error or '(no error given)'}", extra
    if rc != 0:
        return "exit_code", f"the agent wrote a success output but exited with code {rc}", extra
    updates = len(outputs) - len(results)
    detail = f"{len(outputs)} outputs" + (f", {updates} of them session updates" if updates else "")
    if len(results) > 1:
        return None, f"the agent honoured the v1 contract ({detail}; the last one is the result)", extra
    return None, f"the agent honoured the v1 contract ({detail})", extra


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
    payload = _payload(params)
    src = runner_source(params["project_dir"])
    base = make_private_dir(account, "nanoclaw-smoke-")
    try:
        spec = base_spec(params, name)
        spec.interactive = True
        spec.mounts = v1_mounts(base, params["mounts"], bool(payload.get("isMain")), src)
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

        done = engine.run_attached(spec, json.dumps(payload), float(params["timeout"]), on_stdout, deadline)
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
            "spawn_to_first_byte": _round(done.first_byte),
            "spawn_to_result": _round(marks.get("result")),
            "result_to_exit": _round(started + done.seconds - marks["closed"]) if "closed" in marks and not done.timed_out else None,
            "total": _round(time.monotonic() - started),
        }
        result.update(failure=failure, msg=msg)
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


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


def heartbeat_after(path: str, since: float) -> bool:
    try:
        return os.stat(path).st_mtime >= since
    except OSError:
        return False


def smoke_v2(module: AnsibleModule, engine: Engine, account: Account, name: str) -> dict:
    params = module.params
    base = make_private_dir(account, "nanoclaw-smoke-v2-")
    try:
        session, mounts = prepare_v2(params, account, base)
        slug = params["install_slug"] or install_slug(session)
        message_id = f"smoke-{uuid.uuid4().hex[:12]}"
        queued = v2s.write_message(session, message_id, str(_payload(params)["prompt"]))
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
                "spawn_to_heartbeat": _round(seen_at),
                "spawn_to_result": _round(acked_at),
                "stop": _round(stop_seconds),
                "total": _round(time.monotonic() - started),
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


def _payload(params: dict) -> dict:
    payload = dict(DEFAULT_INPUT)
    payload.update(params["input"])
    if params["secrets"]:
        payload["secrets"] = params["secrets"]
    return payload


class _LogFeed:
    """The pod log as it streams in: the parser, and when each output ended."""

    def __init__(self, started: float) -> None:
        self.parser = SentinelParser()
        self.started = started
        self.ended_at: list[float] = []
        self.text = ""

    def __call__(self, chunk: str) -> None:
        self.text += chunk
        completed = self.parser.feed(chunk)
        self.ended_at.extend([time.monotonic() - self.started] * len(completed))


def _wait(predicate, deadline: float, interval: float = 0.1) -> bool:
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def _ipc_round_trip(params: dict, kube: kj.KubeJobs, job_name: str, feed: _LogFeed, deadline: float) -> tuple[dict, str | None, str]:
    ipc_path = params["ipc_path"]
    before = set(kj.ipc_replies(ipc_path))
    outputs_before = len(feed.parser.outputs)
    sent_at = time.monotonic()
    sent = kj.ipc_message_file(ipc_path, params["ipc_message"], time.time())
    ipc_deadline = min(deadline, sent_at + params["ipc_timeout"])
    replies: dict = {}

    def replied() -> bool:
        replies.update({k: v for k, v in kj.ipc_replies(ipc_path).items() if k not in before})
        return bool(replies)

    got = _wait(replied, ipc_deadline)
    info: dict = {"sent": sent, "reply_seconds": _round(time.monotonic() - sent_at) if got else None}
    if got:
        name = sorted(replies)[0]
        info["reply_file"] = name
        info["reply"] = replies[name]
        os.unlink(os.path.join(ipc_path, "messages", name))  # the host consumes it, as NanoClaw's does
    kj.ipc_close(ipc_path)
    closed = _wait(lambda: _terminated(kube, job_name), min(deadline, time.monotonic() + params["ipc_timeout"]), 0.2)
    info["closed"] = closed
    outputs = [o.value for o in kj.untangle_all(feed.parser.outputs[outputs_before:])[0] if o.valid]
    info["reply_outputs"] = [o for o in outputs if not (isinstance(o, dict) and o.get("result") is None)]
    info["input_left"] = sorted(os.listdir(os.path.join(ipc_path, "input")))
    if not got:
        return info, "ipc_no_reply", f"the agent wrote no reply into messages/ of {ipc_path} within {params['ipc_timeout']} s of {sent}"
    if not closed:
        return info, "ipc_not_closed", f"the agent answered over IPC but did not end within {params['ipc_timeout']} s of input/_close"
    return info, None, ""


def _terminated(kube: kj.KubeJobs, job_name: str) -> bool:
    pod = kube.pod(job_name)
    return pod is not None and kj.container_exit_code(pod) is not None


def _pod_seen(result: dict, pod: dict) -> tuple[str, str] | None:
    """Note the agent pod and its node in ``result``; its failure when it cannot start."""
    result["pod_name"] = pod["metadata"]["name"]
    result["node_name"] = pod.get("spec", {}).get("nodeName")
    return kj.waiting_failure(pod)


def _started(kube: kj.KubeJobs, job_name: str) -> bool:
    pod = kube.pod(job_name)
    return pod is not None and (kj.container_running(pod) or kj.container_exit_code(pod) is not None)


def smoke_kubernetes(module: AnsibleModule, kube: kj.KubeJobs, job: dict, warm: dict | None = None, claim: str = "") -> dict:
    """One v1 session as a Job: created from ``job``, or, with ``warm`` (the pool's Job manifest),
    a running member of the group's warm pool claimed (the pool topped up from ``warm`` at once;
    a new Job from ``job`` when no member runs). Timings count from the create request or claim."""
    params = module.params
    if params["ipc_path"]:
        kj.ipc_prepare(params["ipc_path"])
    started = time.monotonic()
    deadline = started + params["timeout"]
    created_at = time.time()
    timings: dict = {}
    job_name = None
    warm_result: dict = {}
    if warm is not None:
        job_name = kube.claim_warm(params["group"], claim)
        timings["claim"] = _round(time.monotonic() - started)
        warm_result["warm"] = job_name is not None
        if job_name:
            # The next session finds a member again; a refusal (the quota) costs only that.
            try:
                kube.create(warm)
                warm_result["warm_topped_up"] = True
            except kj.KubeError as exc:
                warm_result.update(warm_topped_up=False, warm_top_up_error=str(exc))
    if job_name is None:
        job_name = kube.create(job)
    result: dict = {"job_name": job_name, "pod_name": None, "node_name": None, "started_at": round(created_at, 3), **warm_result}
    failure, msg = None, ""
    try:
        pod = None
        running_at = None
        next_event_check = started + 1
        while time.monotonic() < deadline:
            pod = kube.pod(job_name)
            if pod is not None:
                stuck = _pod_seen(result, pod)
                if stuck:
                    failure, msg = stuck
                    break
                if kj.container_running(pod) or kj.container_exit_code(pod) is not None:
                    running_at = time.monotonic() - started
                    break
            elif time.monotonic() >= next_event_check:
                rejected = kube.failed_create(job_name)
                if rejected:
                    failure, msg = "job_rejected", f"the Job controller could not create the agent pod: {rejected}"
                    break
                next_event_check = time.monotonic() + 1
            time.sleep(0.1)
        timings["create_to_running"] = _round(running_at)
        if failure is None and running_at is None:
            failure, msg = "timeout", f"the agent pod did not start within {params['timeout']} s"
        feed = _LogFeed(started)
        if failure is None:
            pod_name = result["pod_name"]
            follower = kube.follow_log(pod_name, feed, max(1.0, deadline - time.monotonic()))
            try:
                kube.attach_stdin(pod_name, json.dumps(_payload(params)))
            except kj.KubeError as exc:
                # An agent that exits at once cannot be attached to; its log still says why.
                result["attach_error"] = str(exc)
            _wait(lambda: bool(feed.parser.outputs) or _terminated(kube, job_name), deadline, 0.05)
            if feed.ended_at:
                timings["create_to_parsed"] = _round(feed.ended_at[0])
                timings["running_to_parsed"] = _round(feed.ended_at[0] - running_at)
            session_outputs = list(feed.parser.outputs)
            if (
                params["ipc_path"]
                and session_outputs
                and session_outputs[-1].valid
                and session_outputs[-1].value.get("status") == "success"
            ):
                result["ipc"], failure, msg = _ipc_round_trip(params, kube, job_name, feed, deadline)
            if failure is None:
                if not _wait(lambda: _terminated(kube, job_name), deadline, 0.2):
                    failure, msg = "timeout", f"the agent did not finish within {params['timeout']} s; Job {job_name} deleted"
                else:
                    timings["create_to_exit"] = _round(time.monotonic() - started)
                    follower.join(timeout=10)
                    pod = kube.pod(job_name) or pod
                    rc = kj.container_exit_code(pod)
                    result["exit_code"] = rc
                    # The whole log, once the container has ended, is what is judged.
                    full = SentinelParser()
                    full.feed(kube.log(pod_name))
                    outputs, interleaved = kj.untangle_all(full.outputs)
                    if interleaved:
                        result["interleaved_lines"] = interleaved
                    judged = outputs[: len(session_outputs)] if params["ipc_path"] and session_outputs else outputs
                    failure, msg, extra = judge_v1(judged, rc, params["several_outputs"])
                    result.update(extra)
            result["outputs_count"] = len(feed.parser.outputs)
        if result["pod_name"]:
            try:
                result["stdout_tail"] = tail(kube.log(result["pod_name"]))
            except kj.KubeError:
                result["stdout_tail"] = tail(feed.text)
    finally:
        if not params["keep_job"]:
            result["removed"] = kube.delete(job_name)
        timings["total"] = _round(time.monotonic() - started)
        result["timings"] = timings
        result["ended_at"] = round(created_at + timings["total"], 3)
    result.update(failure=failure, msg=msg)
    return result


def smoke_kubernetes_v2(module: AnsibleModule, kube: kj.KubeJobs, job: dict, session_id: str) -> dict:
    """One v2 session as a Job: the session folder prepared in the sessions claim, a message queued in
    its inbound.db, then the heartbeat and the message's completion awaited on this host's view of it."""
    params = module.params
    made = kj.v2_prepare(params["session_path"], params["group_path"], session_id, {**DEFAULT_V2_CONFIG, **params["container_config"]})
    session = made["session"]
    message_id = f"smoke-{uuid.uuid4().hex[:12]}"
    result: dict = {"session": session_id, "pod_name": None, "node_name": None}
    timings: dict = {}
    failure, msg = None, ""
    try:
        v2s.write_message(session, message_id, str(_payload(params)["prompt"]))
        heartbeat = os.path.join(session, ".heartbeat")
        wall_start = time.time() - 1  # mtime granularity
        started = time.monotonic()
        deadline = started + params["timeout"]
        created_at = time.time()
        job_name = kube.create(job)
        result.update(job_name=job_name, started_at=round(created_at, 3))
        seen_at = acked_at = running_at = None
        exit_code = None
        while time.monotonic() < deadline:
            pod = kube.pod(job_name)
            if pod is not None:
                stuck = _pod_seen(result, pod)
                if stuck:
                    failure, msg = stuck
                    break
                if running_at is None and (kj.container_running(pod) or kj.container_exit_code(pod) is not None):
                    running_at = time.monotonic() - started
                exit_code = kj.container_exit_code(pod)
            if seen_at is None and heartbeat_after(heartbeat, wall_start):
                seen_at = time.monotonic() - started
            if acked_at is None and v2s.ack_status(session, message_id) == "completed":
                acked_at = time.monotonic() - started
            if (seen_at is not None and acked_at is not None) or exit_code is not None:
                break
            time.sleep(0.1)
        ack = v2s.ack_status(session, message_id)
        result.update(
            heartbeat=seen_at is not None or heartbeat_after(heartbeat, wall_start),
            acknowledged=ack,
            replies=v2s.replies(session),
            exit_code=exit_code,
        )
        timings.update(create_to_running=_round(running_at), create_to_heartbeat=_round(seen_at), create_to_result=_round(acked_at))
        if result["pod_name"] and failure is None:
            # The runner can finish before the API reports its container running (the kubelet's
            # status lags): its log can be read once it does.
            _wait(lambda: _started(kube, job_name), min(deadline, time.monotonic() + 10), 0.2)
            with contextlib.suppress(kj.KubeError):
                result["stdout_tail"] = tail(kube.log(result["pod_name"]))
        if failure is None:
            if exit_code is not None and (not result["heartbeat"] or ack != "completed"):
                failure, msg = "exited_early", f"the agent exited with code {exit_code} before it had processed the smoke message"
            elif running_at is None and not result["heartbeat"]:
                failure, msg = "timeout", f"the agent pod did not start within {params['timeout']} s"
            elif not result["heartbeat"]:
                failure, msg = "no_heartbeat", f"/workspace/.heartbeat was not touched within {params['timeout']} s"
            elif ack != "completed":
                failure, msg = "not_acknowledged", f"the smoke message is {ack or 'not acknowledged'} after {params['timeout']} s"
    finally:
        if result.get("job_name") and not params["keep_job"]:
            result["removed"] = kube.delete(result["job_name"])
        if not params["keep_job"]:
            kj.v2_cleanup(made)
        if "started_at" in result:
            timings["total"] = _round(time.monotonic() - started)
            result["ended_at"] = round(result["started_at"] + timings["total"], 3)
        result["timings"] = timings
    result.update(failure=failure, msg=msg or f"the v2 agent processed the smoke message in session {session_id}")
    return result


def main_kubernetes(module: AnsibleModule) -> None:
    params = module.params
    base = {"changed": False, "container_name": None, "executable": None}
    if params["warm"]:
        started_with = [o for o in ("env", "pod_security_context", "node_selector", "name", "job_template") if params[o]]
        if params["contract"] != "v1" or started_with:
            module.fail_json(
                msg=(
                    "warm=true takes an agent that is already running, so it cannot have its contract v2 or "
                    + ", ".join(started_with or ["contract"])
                    + " set for it: leave those out, or run a new Job (warm=false)"
                ),
                failure="bad_input",
                **base,
            )
    if params["contract"] == "v2" and not (params["session_path"] and params["group_path"]):
        module.fail_json(
            msg=(
                "engine=kubernetes with contract=v2 needs session_path and group_path: the directories of the group's"
                " sessions and group claims as this host sees them (the session's databases and heartbeat live there)"
            ),
            failure="bad_input",
            **base,
        )
    try:
        import kubernetes  # noqa: F401 - optional dependency
    except ImportError:
        module.fail_json(msg=missing_required_lib("kubernetes"), failure="engine_missing", **base)
    try:
        kube = kj.KubeJobs(params["kubeconfig"], params["context"], params["namespace"])
        template = params["job_template"] or kube.template(params["job_template_configmap"], f"job-{params['group']}.yaml")
        generation = kj.template_generation(template)
        if generation != params["contract"]:
            raise ValueError(
                f"the Job template of group {params['group']} is a {generation} template and contract is {params['contract']}:"
                f" render it with nanoclaw_kubernetes_generation: {params['contract']}, or set contract: {generation}"
            )
        smoke_id = uuid.uuid4().hex[:12]
        session_id = f"smoke-{smoke_id}"
        warm = kube.template(params["job_template_configmap"], f"warm-{params['group']}.yaml") if params["warm"] else None
        if warm is not None and kj.agent_container(warm).get("image") != params["image"]:
            raise ValueError(
                f"the warm pool of group {params['group']} runs {kj.agent_container(warm).get('image')}, not {params['image']}:"
                " a warm agent's image is the one it was started with"
            )
        env = dict(params["env"])
        if params["contract"] == "v2":
            env[kj.SESSION_ENV] = session_id
        job = kj.prepare_job(
            template,
            params["image"],
            smoke_id,
            env=env,
            pod_security_context=params["pod_security_context"],
            node_selector=params["node_selector"],
            name=params["name"],
        )
        if module.check_mode:
            kube.dry_run_create(job)
            module.exit_json(
                msg=f"check mode: the Job from the template is admitted in namespace {params['namespace']} (dry run); agent not started",
                failure=None,
                **base,
            )
        if params["contract"] == "v2":
            result = smoke_kubernetes_v2(module, kube, job, session_id)
        else:
            result = smoke_kubernetes(module, kube, job, warm, smoke_id)
    except (kj.KubeError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc), failure="api_error", **base)
    result.update(base)
    if result["failure"]:
        module.fail_json(**result)
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "image": {"type": "str", "required": True},
            "contract": {"type": "str", "choices": ["v1", "v2"], "default": "v1"},
            "engine": {"type": "str", "choices": ["docker", "podman", "kubernetes"], "default": "docker"},
            "executable": {"type": "str"},
            "user": {"type": "str"},
            "environment": {"type": "dict", "default": {}},
            "input": {"type": "dict", "default": {}},
            "secrets": {"type": "dict", "default": {}, "no_log": True},
            "mounts": {
                "type": "list",
                "elements": "str",
                "choices": list(V1_MOUNTS),
                "default": list(V1_MOUNTS),
            },
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
            "kubeconfig": {"type": "path"},
            "context": {"type": "str"},
            "namespace": {"type": "str", "default": "nanoclaw"},
            "group": {"type": "str", "default": "main"},
            "job_template_configmap": {"type": "str", "default": "nanoclaw-agent-job-template"},
            "job_template": {"type": "dict"},
            "pod_security_context": {"type": "dict", "default": {}},
            "node_selector": {"type": "dict", "default": {}},
            "warm": {"type": "bool", "default": False},
            "keep_job": {"type": "bool", "default": False},
            "ipc_path": {"type": "path"},
            "session_path": {"type": "path"},
            "group_path": {"type": "path"},
            "ipc_message": {"type": "str", "default": "IPC round trip from nanoclaw.provision"},
            "ipc_timeout": {"type": "int", "default": 60},
            "project_dir": {"type": "path"},
            "close_timeout": {"type": "int", "default": 30},
            "service_unit": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["engine"] == "kubernetes":
        main_kubernetes(module)
        return
    name = params["name"] or f"nanoclaw-smoke-{uuid.uuid4().hex[:8]}"
    try:
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
        executable = runner.resolve()
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
