#!/usr/bin/python
# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent_smoke_job
short_description: Smoke-test the agent contract as a Kubernetes Job
version_added: 0.1.0
description:
  - Runs a NanoClaw agent once as a Kubernetes Job made from the agent Job template the
    C(nanoclaw.provision.kubernetes) role publishes, and checks the contract of the NanoClaw
    generation asked for, as M(nanoclaw.provision.agent_smoke) does through the container CLI on a
    host. The results of the two read the same; the failures and timings of a Job are its own.
  - The Job comes from the template (ConfigMap O(job_template_configmap), key C(job-<group>.yaml),
    or O(job_template)) with the image, O(env), O(pod_security_context) and O(node_selector) set;
    it mounts the group's claims as the template says. The Job is deleted (foreground, with its
    pod) unless O(keep_job).
  - V(v1) contract - the module creates the Job, waits until the agent container runs, writes the
    JSON input to its stdin through the API (C(attach); the template has C(stdin) and
    C(stdinOnce)), follows the pod log and extracts each JSON output between
    C(---NANOCLAW_OUTPUT_START---) and C(---NANOCLAW_OUTPUT_END---), as the real host does. A pod log
    merges stdout and stderr line by line, so lines of the agent's stderr can land between the
    markers; when the text between them is not JSON but exactly one of its lines is a JSON object,
    that line is the output and RV(interleaved_lines) counts the others. When the agent writes
    several results the last one is the result and RV(outputs_count) says how many outputs there
    were.
  - IPC round trip (V(v1), O(ipc_path) set) - after the agent's result, writes
    C(input/<ms>-smoke.json) (a JSON object with C(type=message) and the O(ipc_message) as C(text))
    into the group's IPC claim as the host sees it, waits for the agent's reply in C(messages/), then
    writes C(input/_close) and requires the agent to end. Failures - V(ipc_no_reply),
    V(ipc_not_closed).
  - Warm pool (V(v1), O(warm)) - takes a running agent of the group's warm pool instead of creating a
    Job, and starts a new member of the pool at once.
  - V(v2) contract - the template must be a v2 one (the kubernetes role's
    C(nanoclaw_kubernetes_generation=v2); a template of the other generation fails with
    V(api_error) naming the variable). With O(session_path) and O(group_path), the module prepares
    a session folder in the sessions claim as v2's host does, queues the smoke message in its
    C(inbound.db), creates the Job with C(NANOCLAW_SESSION) naming the folder (the template mounts
    it at C(/workspace)), waits until the runner has touched C(.heartbeat) and marked the message
    C(completed) in C(outbound.db), then deletes the Job and removes what it made. Failures -
    V(exited_early), V(no_heartbeat), V(not_acknowledged).
  - Each way of failing has its own RV(failure) value and message - V(api_error) (kubeconfig,
    connection, RBAC, missing template, a template of the other generation, a warm pool of another
    image), V(job_rejected) (the Job controller could not create the pod, for example the quota or
    Pod Security), V(image_missing) and V(pod_error) (the container cannot start), V(timeout) (the
    Job is deleted), V(engine_missing) (no C(kubernetes) Python package), V(bad_input) (options that
    cannot go together, see O(warm) and O(contract)), then the output failures of
    M(nanoclaw.provision.agent_smoke) - V(no_markers), V(invalid_json), V(several_outputs) (only
    with O(several_outputs=fail)), V(status_error) (shows the agent's error), V(exit_code).
  - Secrets are accepted only in O(secrets) (C(no_log)); they go to the agent on stdin inside the
    JSON input, never into the Job, and never into the result.
author:
  - nanoclaw.provision maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nanoclaw.provision.attributes
attributes:
  check_mode:
    support: partial
    details:
      - In check mode the module reads the template and creates the Job as a server-side dry run
        (admission, quota and RBAC are checked; nothing is created); the agent does not start.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Never reports C(changed). The Jobs it creates are deleted (unless O(keep_job)), and what it
        writes into the claims is removed.
  platform:
    platforms: posix
options:
  image:
    description:
      - The agent image. It replaces the image of the template's agent container; the template's
        C(imagePullPolicy) decides whether the node pulls it. With O(warm), it must be the pool's
        image.
    type: str
    required: true
  contract:
    description:
      - Which NanoClaw generation's contract to check. The template must be of the same generation.
      - V(v2) needs O(session_path) and O(group_path), and cannot go with O(warm).
    type: str
    choices: [v1, v2]
    default: v1
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
        C(ANTHROPIC_API_KEY)). Never logged, never in the Job, never returned.
    type: dict
    default: {}
  env:
    description:
      - Non-secret environment for the agent container, set over the template's; values are visible
        in the Job, so never put secrets here.
    type: dict
    default: {}
  name:
    description:
      - The Job's name. Default is the template's C(generateName).
    type: str
  timeout:
    description:
      - Seconds from creating the Job (or claiming a warm agent) until the agent ends; the Job is
        deleted after a timeout.
    type: int
    default: 300
  several_outputs:
    description:
      - V(v1) - what to do when the agent writes more than one output - use the V(last) one as the
        result, or V(fail).
    type: str
    choices: [last, fail]
    default: last
  kubeconfig:
    description:
      - The kubeconfig to use. Default is C(KUBECONFIG) or C(~/.kube/config).
    type: path
  context:
    description:
      - The kubeconfig context. Default is the current context.
    type: str
  namespace:
    description:
      - The namespace the kubernetes role manages.
    type: str
    default: nanoclaw
  group:
    description:
      - The group whose Job template (and so whose claims) the Job uses.
    type: str
    default: main
  job_template_configmap:
    description:
      - The ConfigMap holding the templates, one key C(job-<group>.yaml) per group (and
        C(warm-<group>.yaml) for O(warm)).
    type: str
    default: nanoclaw-agent-job-template
  job_template:
    description:
      - A Job manifest to use instead of reading the ConfigMap.
    type: dict
  pod_security_context:
    description:
      - Merged into the pod's C(securityContext), for example C(runAsUser) and C(runAsGroup) as
        OpenShift's C(restricted-v2) SCC assigns them to a template rendered with
        C(nanoclaw_kubernetes_openshift=true).
    type: dict
    default: {}
  node_selector:
    description:
      - Labels merged into the pod's C(nodeSelector), to run the agent on a given node (for example
        C(kubernetes.io/hostname)) on a cluster of several. The template's own selector (the
        kubernetes role's C(nanoclaw_kubernetes_node_name)) is kept unless a key is the same.
        RV(node_name) says where the pod ran.
    type: dict
    default: {}
  warm:
    description:
      - V(v1) - take a running agent of the group's warm pool (the kubernetes role's
        C(nanoclaw_kubernetes_warm_pool)) instead of creating a Job - claimed by labelling its pod
        C(nanoclaw.dev/claimed) under the pod's resourceVersion, so two sessions never share one -
        and start a new member from the ConfigMap's C(warm-<group>.yaml) at once. When no member
        runs, a new Job is created as without O(warm) (RV(warm) is then false). O(image) must be the
        pool's image; O(contract=v2), O(env), O(pod_security_context), O(node_selector), O(name) and
        O(job_template) cannot apply to a running agent and are refused (V(bad_input)).
    type: bool
    default: false
  keep_job:
    description:
      - Leave the Job (and its pod) in place for inspection instead of deleting it; the template's
        C(ttlSecondsAfterFinished) still applies. With V(v2) the session folder stays too.
    type: bool
    default: false
  ipc_path:
    description:
      - V(v1) - the directory backing the group's IPC claim, as this host sees it (a hostPath or
        local volume on a single node, an NFS mount). When set, the module does the IPC round trip.
        C(input), C(messages) and C(tasks) are created in it when missing, owned like it; the agent's
        user must be able to write there (the claim directory owned by it, or group-writable by its
        group, for example group 0 on OpenShift).
    type: path
  ipc_message:
    description:
      - The text of the follow-up message of the IPC round trip (O(ipc_path)).
    type: str
    default: IPC round trip from nanoclaw.provision
  ipc_timeout:
    description:
      - Seconds to wait for the agent's reply in C(messages/), and then for it to end after
        C(_close) (O(ipc_path)).
    type: int
    default: 60
  session_path:
    description:
      - V(v2) - the directory backing the group's sessions claim, as this host sees it. The module
        makes the session folder C(smoke-<id>) there (C(outbox/), C(inbound.db) with the smoke
        message, C(outbound.db)) and the group's C(.claude-shared) when missing, owned like the
        directory, and removes what it made afterwards; the Job mounts the folder at C(/workspace).
      - Required with O(contract=v2), and together with O(group_path).
    type: path
  group_path:
    description:
      - V(v2) - the directory backing the group's claim, as this host sees it. When it has no
        C(container.json) (the template mounts one read-only), the module writes one from
        O(container_config) and removes it afterwards; an existing one is used as it is.
      - Required with O(contract=v2), and together with O(session_path).
    type: path
  container_config:
    description:
      - V(v2) - merged over C(provider=mock), C(assistantName=Smoke), C(groupName=smoke) and
        C(agentGroupId=smoke) into the C(container.json) the module writes into O(group_path) when
        the group has none.
    type: dict
    default: {}
requirements:
  - The C(kubernetes) Python package on the host the module runs on.
notes:
  - Needs, in the namespace - C(configmaps) get (unless O(job_template)), C(jobs) create, get and
    delete, C(pods) list, C(pods/attach) create (the input goes to stdin), C(pods/log) get,
    C(events) list, and for O(warm) C(pods) and C(jobs) patch; the kubernetes role's controller
    Role grants these.
  - O(job_template) and O(job_template_configmap) are mutually exclusive.
seealso:
  - module: nanoclaw.provision.agent_smoke
"""

EXAMPLES = r"""
- name: The agent as a Kubernetes Job from the kubernetes role's template, with the IPC round trip
  nanoclaw.provision.agent_smoke_job:
    image: registry.example.internal/nanoclaw-agent:1.2.3
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
  nanoclaw.provision.agent_smoke_job:
    image: registry.example.internal/nanoclaw-agent:1.2.3
    namespace: nanoclaw
    pod_security_context:
      runAsUser: 1000650000
      runAsGroup: 0

- name: On a given node of several
  nanoclaw.provision.agent_smoke_job:
    image: registry.example.internal/nanoclaw-agent:1.2.3
    node_selector:
      kubernetes.io/hostname: node-b

- name: A session from the warm pool (the kubernetes role's nanoclaw_kubernetes_warm_pool)
  nanoclaw.provision.agent_smoke_job:
    image: registry.example.internal/nanoclaw-agent:1.2.3
    warm: true
    ipc_path: /var/lib/nanoclaw/volumes/nanoclaw/nanoclaw-ipc-main

- name: A v2 session, prepared in the claims as v2's host prepares one
  nanoclaw.provision.agent_smoke_job:
    image: registry.example.internal/nanoclaw-agent-v2:2.0.64
    contract: v2
    session_path: /var/lib/nanoclaw/volumes/nanoclaw/nanoclaw-sessions-main
    group_path: /var/lib/nanoclaw/volumes/nanoclaw/nanoclaw-group-main
"""

RETURN = r"""
failure:
  description: Why the smoke test failed, or null when it passed.
  returned: always
  type: str
  sample: status_error
container_name:
  description: Always null - a Job has no container of the module's own (the key reads as M(nanoclaw.provision.agent_smoke)'s).
  returned: always
  type: str
executable:
  description: Always null - no container CLI runs (the key reads as M(nanoclaw.provision.agent_smoke)'s).
  returned: always
  type: str
job_name:
  description: The name of the Job the module created (or of the warm Job it claimed).
  returned: when the Job was created
  type: str
  sample: nanoclaw-main-x7k2p
pod_name:
  description: The agent pod.
  returned: when the Job was created (null until the pod is seen)
  type: str
node_name:
  description: The node the scheduler put the agent pod on (null until it is bound).
  returned: when the Job was created
  type: str
started_at:
  description: When the module asked for the Job, or claimed the warm agent (seconds since the epoch).
  returned: when the Job was created
  type: float
ended_at:
  description: When the Job and its pod were gone (seconds since the epoch).
  returned: when the Job was created
  type: float
removed:
  description: Whether the Job and its pod are gone.
  returned: when the Job was created and keep_job is false
  type: bool
  sample: true
exit_code:
  description: The agent container's exit code.
  returned: when the agent ended (v1), or once the pod was seen (v2)
  type: int
  sample: 0
output:
  description: V(v1) - the agent's result (the last output, or the only one).
  returned: when an output was parsed
  type: dict
  sample: {"status": "success", "result": "OK", "newSessionId": "3c1d"}
outputs_count:
  description: V(v1) - how many marker-delimited outputs the pod log had.
  returned: when contract is v1 and the agent container ran
  type: int
  sample: 1
agent_error:
  description: V(v1) - the C(error) field of an output with C(status=error).
  returned: when failure is status_error
  type: str
interleaved_lines:
  description: V(v1) - lines of other output (the agent's stderr) found between the markers in the pod log and set aside.
  returned: when there were any
  type: int
attach_error:
  description: V(v1) - why the input could not be written to the agent's stdin (an agent that exits at once); its log says more.
  returned: when the attach failed
  type: str
stdout_tail:
  description: Last lines of the pod log.
  returned: when the pod was seen
  type: str
warm:
  description: V(v1) with O(warm) - whether a member of the warm pool ran the session (false - none was running, a new Job did).
  returned: when warm is true
  type: bool
warm_topped_up:
  description: Whether the new member of the pool was created (RV(warm_top_up_error) says why not).
  returned: when a warm agent was claimed
  type: bool
warm_top_up_error:
  description: Why the new member of the pool could not be created (for example the quota).
  returned: when warm_topped_up is false
  type: str
ipc:
  description:
    - V(v1) with O(ipc_path) - C(sent) (the input file), C(reply_file) and C(reply) (the agent's
      message from C(messages/)), C(reply_outputs) (the results the agent wrote after the
      follow-up; its session updates, whose C(result) is null, are left out, as whether the last one
      is in the log when the pod ends is a matter of timing), C(reply_seconds) (from writing the
      input to seeing the reply), C(closed) (the agent ended after C(_close)), C(input_left)
      (files still in C(input/)).
  returned: when ipc_path is set and the agent answered
  type: dict
session:
  description: V(v2) - the session folder's name in the sessions claim (removed afterwards).
  returned: when contract is v2
  type: str
heartbeat:
  description: V(v2) - whether C(/workspace/.heartbeat) was touched before the deadline.
  returned: when contract is v2 and the Job was created
  type: bool
acknowledged:
  description: V(v2) - the smoke message's C(processing_ack) status in C(outbound.db) (V(completed) when processed).
  returned: when contract is v2 and the Job was created
  type: str
replies:
  description: V(v2) - texts the agent wrote to C(messages_out) (the mock provider's answers are not delivered, so none).
  returned: when contract is v2 and the Job was created
  type: list
  elements: str
timings:
  description:
    - V(v1) - seconds from the create request - C(create_to_running) (the agent container seen
      running), C(create_to_parsed) (the end marker of its first output read from the pod log),
      C(running_to_parsed), C(create_to_exit) (the container terminated) and C(total) (until the
      Job and its pod are gone). With O(warm) - C(claim) (finding and claiming a warm agent), and
      the others count from the claim instead of the create request.
    - V(v2) - C(create_to_running) (null when the runner was done before the API reported its
      container running), C(create_to_heartbeat), C(create_to_result) (the message marked
      completed) and C(total).
  returned: when the Job was created
  type: dict
  sample: {"create_to_running": 1.92, "create_to_parsed": 2.41, "running_to_parsed": 0.49, "create_to_exit": 2.6, "total": 3.55}
"""

import uuid
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nanoclaw.provision.plugins.module_utils import _jobsmoke as js
from ansible_collections.nanoclaw.provision.plugins.module_utils import _kubejob as kj

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "image": {"type": "str", "required": True},
    "contract": {"type": "str", "choices": ["v1", "v2"], "default": "v1"},
    "input": {"type": "dict", "default": {}},
    "secrets": {"type": "dict", "default": {}, "no_log": True},
    "env": {"type": "dict", "default": {}},
    "name": {"type": "str"},
    "timeout": {"type": "int", "default": 300},
    "several_outputs": {"type": "str", "choices": ["last", "fail"], "default": "last"},
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
    "ipc_message": {"type": "str", "default": "IPC round trip from nanoclaw.provision"},
    "ipc_timeout": {"type": "int", "default": 60},
    "session_path": {"type": "path"},
    "group_path": {"type": "path"},
    "container_config": {"type": "dict", "default": {}},
}
# A v2 session lives in both claims; the template names the one, the group's container.json is in the other.
REQUIRED_IF = [("contract", "v2", ("session_path", "group_path"))]
REQUIRED_TOGETHER = [("session_path", "group_path")]
# The Job comes from the one or from the other: given both, one of them would be ignored.
MUTUALLY_EXCLUSIVE = [("job_template", "job_template_configmap")]
# What a new Job gets and a warm agent, started before the session, cannot.
NEW_JOB_ONLY = ("env", "pod_security_context", "node_selector", "name", "job_template")
# The result keys of every answer; the two null ones keep it reading as agent_smoke's.
BASE = {"changed": False, "container_name": None, "executable": None}


def bad_input(params: dict[str, Any]) -> str | None:
    """Why the options cannot go together, naming them; None when they can. (What the argument spec
    cannot say: an option refused for a value of another, and a path given as null or empty, which
    required_if counts as given.)"""
    if params["warm"]:
        started_with = [o for o in NEW_JOB_ONLY if params[o]]
        if params["contract"] != "v1" or started_with:
            return (
                "warm=true takes an agent that is already running, so it cannot have its contract v2 or "
                + ", ".join(started_with or ["contract"])
                + " set for it: leave those out, or run a new Job (warm=false)"
            )
    if params["contract"] == "v2" and not (params["session_path"] and params["group_path"]):
        return (
            "contract=v2 needs session_path and group_path: the directories of the group's sessions and group"
            " claims as this host sees them (the session's databases and heartbeat live there)"
        )
    return None


def templates(kube: kj.KubeJobs, params: dict[str, Any]) -> tuple[dict, dict | None]:
    """The group's Job template, and with ``warm`` its warm pool's; ValueError when they cannot serve."""
    template = params["job_template"] or kube.template(params["job_template_configmap"], f"job-{params['group']}.yaml")
    generation = kj.template_generation(template)
    if generation != params["contract"]:
        raise ValueError(
            f"the Job template of group {params['group']} is a {generation} template and contract is {params['contract']}:"
            f" render it with nanoclaw_kubernetes_generation: {params['contract']}, or set contract: {generation}"
        )
    if not params["warm"]:
        return template, None
    warm = kube.template(params["job_template_configmap"], f"warm-{params['group']}.yaml")
    if kj.agent_container(warm).get("image") != params["image"]:
        raise ValueError(
            f"the warm pool of group {params['group']} runs {kj.agent_container(warm).get('image')}, not {params['image']}:"
            " a warm agent's image is the one it was started with"
        )
    return template, warm


def build_job(params: dict[str, Any], template: dict, smoke_id: str, session_id: str) -> dict:
    env = dict(params["env"])
    if params["contract"] == "v2":
        env[kj.SESSION_ENV] = session_id
    return kj.prepare_job(
        template,
        params["image"],
        smoke_id,
        env=env,
        pod_security_context=params["pod_security_context"],
        node_selector=params["node_selector"],
        name=params["name"],
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=REQUIRED_IF,
        required_together=REQUIRED_TOGETHER,
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = module.params
    problem = bad_input(params)
    if problem:
        module.fail_json(msg=problem, failure="bad_input", **BASE)
    try:
        import kubernetes  # noqa: F401 - optional dependency
    except ImportError:
        module.fail_json(msg=missing_required_lib("kubernetes"), failure="engine_missing", **BASE)
    try:
        kube = kj.KubeJobs(params["kubeconfig"], params["context"], params["namespace"])
        template, warm = templates(kube, params)
        smoke_id = uuid.uuid4().hex[:12]
        session_id = f"smoke-{smoke_id}"
        job = build_job(params, template, smoke_id, session_id)
        if module.check_mode:
            kube.dry_run_create(job)
            module.exit_json(
                msg=f"check mode: the Job from the template is admitted in namespace {params['namespace']} (dry run); agent not started",
                failure=None,
                **BASE,
            )
        if params["contract"] == "v2":
            result = js.run_v2(params, kube, job, session_id)
        else:
            result = js.V1Session(params, kube).run(job, warm, smoke_id)
    except (kj.KubeError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc), failure="api_error", **BASE)
    result.update(BASE)
    if result["failure"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
