# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes side of agent_smoke_job: one agent session as a Job made from the template
the kubernetes role publishes (ConfigMap ``nanoclaw-agent-job-template``, key ``job-<group>.yaml``).

Pure helpers (``prepare_job``, ``waiting_failure``, ``container_*``, ``ipc_*``,
``template_generation``, ``v2_*``) are unit-tested; ``KubeJobs``
talks to the API server through the ``kubernetes`` Python client, imported lazily so that the
module loads (and documents itself) without it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.nanoclaw.provision.plugins.module_utils import _v2session as v2s
from ansible_collections.nanoclaw.provision.plugins.module_utils._sentinel import Output, decode

AGENT_CONTAINER = "agent"
SMOKE_LABEL = "nanoclaw.dev/smoke"
# The container variable a v2 template's /workspace mount takes the session folder's name from.
SESSION_ENV = "NANOCLAW_SESSION"
# A warm pool's members carry their group; a session that takes one labels it claimed.
WARM_LABEL = "nanoclaw.dev/warm"
CLAIMED_LABEL = "nanoclaw.dev/claimed"
# Waiting reasons of a container that will not start by itself.
IMAGE_REASONS = ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# ... unless the kubelet only has not synced its secret/configmap cache yet: it retries by itself
# (seen on a loaded node: "failed to sync secret cache: timed out waiting for the condition").
TRANSIENT_CONFIG = ("failed to sync secret cache", "failed to sync configmap cache")


class KubeError(RuntimeError):
    """An API call failed; the message says which and why."""


def agent_container(job: dict) -> dict:
    containers = job["spec"]["template"]["spec"]["containers"]
    for container in containers:
        if container.get("name") == AGENT_CONTAINER:
            return container
    return containers[0]


def prepare_job(
    template: dict,
    image: str,
    smoke_id: str,
    *,
    env: dict[str, str] | None = None,
    pod_security_context: dict[str, Any] | None = None,
    node_selector: dict[str, str] | None = None,
    name: str | None = None,
) -> dict:
    """The Job to create: the template with our image, extra env, security context, node selector and a label."""
    job = copy.deepcopy(template)
    if job.get("kind") != "Job" or "template" not in job.get("spec", {}):
        raise ValueError("the job template is not a batch/v1 Job with spec.template")
    meta = job.setdefault("metadata", {})
    if name:
        meta.pop("generateName", None)
        meta["name"] = name
    elif not meta.get("name") and not meta.get("generateName"):
        meta["generateName"] = "nanoclaw-smoke-"
    for labels in (meta.setdefault("labels", {}), job["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})):
        labels[SMOKE_LABEL] = smoke_id
    container = agent_container(job)
    container["image"] = image
    if env:
        current = [e for e in container.get("env", []) if e.get("name") not in env]
        container["env"] = current + [{"name": str(k), "value": str(v)} for k, v in env.items()]
    if pod_security_context:
        pod = job["spec"]["template"]["spec"]
        pod["securityContext"] = {**pod.get("securityContext", {}), **pod_security_context}
    if node_selector:
        pod = job["spec"]["template"]["spec"]
        pod["nodeSelector"] = {**pod.get("nodeSelector", {}), **{str(k): str(v) for k, v in node_selector.items()}}
    return job


def untangle(output: Output) -> tuple[Output, int]:
    """A pod log merges the container's stdout and stderr line by line, so the agent's stderr can
    land between the markers. When the text between them is not JSON but exactly one of its lines
    is a JSON object, that line is the output; returns it and how many lines were set aside."""
    if output.valid:
        return output, 0
    lines = [line for line in output.raw.splitlines() if line.strip()]
    found = [decoded for decoded in (decode(line) for line in lines) if decoded.valid]
    if len(found) != 1:
        return output, 0
    return found[0], len(lines) - 1


def untangle_all(outputs: list[Output]) -> tuple[list[Output], int]:
    untangled = [untangle(o) for o in outputs]
    return [o for o, _n in untangled], sum(n for _o, n in untangled)


def waiting_failure(pod: dict) -> tuple[str, str] | None:
    """(failure, message) when the agent container is stuck waiting for a reason it cannot leave."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        detail = waiting.get("message") or ""
        if reason in IMAGE_REASONS:
            return "image_missing", f"the node cannot get image {status.get('image')}: {reason} {detail}".strip()
        if reason in CONFIG_REASONS and not any(t in detail for t in TRANSIENT_CONFIG):
            return "pod_error", f"the agent container cannot be created: {reason} {detail}".strip()
    return None


def container_exit_code(pod: dict) -> int | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is not None:
            return terminated.get("exitCode")
    return None


def container_running(pod: dict) -> bool:
    return any((s.get("state") or {}).get("running") is not None for s in pod.get("status", {}).get("containerStatuses") or [])


def container_started(pod: dict) -> bool:
    """Running, or already ended: a fast agent can be done before the API ever reports it running."""
    return container_running(pod) or container_exit_code(pod) is not None


def ipc_message_file(ipc_path: str, text: str, stamp: float) -> str:
    """Write input/<ms>-smoke.json atomically (the agent only picks up *.json); return its name."""
    name = f"{int(stamp * 1000)}-smoke.json"
    inbox = os.path.join(ipc_path, "input")
    tmp = os.path.join(inbox, f".{name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"type": "message", "text": text}, handle)
    _same_owner(tmp, ipc_path, 0o660)
    os.rename(tmp, os.path.join(inbox, name))
    return name


def ipc_close(ipc_path: str) -> None:
    path = os.path.join(ipc_path, "input", "_close")
    with open(path, "w", encoding="utf-8"):
        pass
    _same_owner(path, ipc_path, 0o660)


def ipc_prepare(ipc_path: str) -> None:
    """input/, messages/ and tasks/ in the claim's directory, owned like the directory itself."""
    if not os.path.isdir(ipc_path):
        raise FileNotFoundError(f"ipc_path {ipc_path} is not a directory")
    for child in ("input", "messages", "tasks"):
        path = os.path.join(ipc_path, child)
        if not os.path.isdir(path):
            os.mkdir(path)
            _same_owner(path, ipc_path, 0o2770)


def ipc_replies(ipc_path: str) -> dict[str, dict]:
    """The JSON messages the agent left in messages/ (name -> content); unreadable ones skipped."""
    found = {}
    outbox = os.path.join(ipc_path, "messages")
    for name in sorted(os.listdir(outbox)):
        if name.startswith(".") or not (name.endswith(".json")):
            continue
        try:
            with open(os.path.join(outbox, name), encoding="utf-8") as handle:
                found[name] = json.load(handle)
        except (OSError, ValueError):
            continue
    return found


def template_generation(job: dict) -> str:
    """V(v2) for a template of v2's contract (the kubernetes role's ``nanoclaw_kubernetes_generation:
    v2``: no stdin, /workspace from the session named by ``NANOCLAW_SESSION``), else V(v1)."""
    container = agent_container(job)
    for mount in container.get("volumeMounts", []):
        if mount.get("mountPath") == "/workspace" and SESSION_ENV in str(mount.get("subPathExpr", "")):
            return "v2"
    return "v1"


def v2_prepare(sessions_path: str, group_path: str, session_id: str, config: dict) -> dict:
    """What a v2 host makes before it starts an agent, in the claims' directories as this host sees
    them, owned like the claim's directory (the agent's uid or group can write): the session folder
    (``outbox/``, ``inbound.db``, ``outbound.db``), the group's ``.claude-shared`` and, when the
    group has none, a ``container.json``. Returns what was created, so that only that is removed."""
    for path, name in ((sessions_path, "session_path"), (group_path, "group_path")):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{name} {path} is not a directory")
    session = os.path.join(sessions_path, session_id)
    made: dict = {"session": session, "claude_shared": None, "container_json": None}
    v2s.init_session(session)
    for root, dirs, files in os.walk(session):
        for name in dirs:
            _same_owner(os.path.join(root, name), sessions_path, 0o2770)
        for name in files:
            _same_owner(os.path.join(root, name), sessions_path, 0o660)
    _same_owner(session, sessions_path, 0o2770)
    claude = os.path.join(sessions_path, ".claude-shared")
    if not os.path.isdir(claude):
        os.mkdir(claude)
        _same_owner(claude, sessions_path, 0o2770)
        made["claude_shared"] = claude
    config_path = os.path.join(group_path, "container.json")
    if not os.path.lexists(config_path):
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        _same_owner(config_path, group_path, 0o644)
        made["container_json"] = config_path
    return made


def v2_cleanup(made: dict) -> None:
    """Remove what v2_prepare created: the session folder, a ``.claude-shared`` still empty, the
    ``container.json`` it wrote."""
    shutil.rmtree(made["session"], ignore_errors=True)
    if made.get("claude_shared"):
        with contextlib.suppress(OSError):
            os.rmdir(made["claude_shared"])
    if made.get("container_json"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(made["container_json"])


def _same_owner(path: str, like: str, mode: int) -> None:
    st = os.stat(like)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, mode)


class KubeJobs:
    """Create, watch, attach to, read and delete agent Jobs with the kubernetes client."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str) -> None:
        from kubernetes import client, config

        self.namespace = namespace
        try:
            api = config.new_client_from_config(config_file=kubeconfig, context=context)
        except Exception as exc:  # config raises several types (ConfigException, OSError, TypeError)
            raise KubeError(f"cannot load the kubeconfig {kubeconfig or '(default)'}: {exc}") from exc
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self._client = client

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            reason = exc.reason
            with contextlib.suppress(TypeError, ValueError):
                reason = json.loads(exc.body).get("message", reason)
            raise KubeError(f"{what} failed ({exc.status}): {reason}") from exc
        except Exception as exc:  # urllib3 connection errors and the like
            raise KubeError(f"{what} failed: {exc}") from exc

    def template(self, configmap: str, key: str) -> dict:
        import yaml

        cm = self._call(f"reading ConfigMap {self.namespace}/{configmap}", self.core.read_namespaced_config_map, configmap, self.namespace)
        data = cm.data or {}
        if key not in data:
            raise KubeError(f"ConfigMap {self.namespace}/{configmap} has no key {key} (keys: {', '.join(sorted(data)) or 'none'})")
        return yaml.safe_load(data[key])

    def create(self, job: dict) -> str:
        created = self._call(f"creating a Job in {self.namespace}", self.batch.create_namespaced_job, self.namespace, job)
        return created.metadata.name

    def dry_run_create(self, job: dict) -> None:
        """Create the Job as a server-side dry run: admission (Pod Security on the Job's pod
        template is a warning only), quota and RBAC answer, nothing is stored."""
        self._call("creating the Job (server-side dry run)", self.batch.create_namespaced_job, self.namespace, job, dry_run="All")

    def job(self, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            job = self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"reading Job {name} failed ({exc.status}): {exc.reason}") from exc
        return self._client.ApiClient().sanitize_for_serialization(job)

    def pod(self, job_name: str) -> dict | None:
        pods = self._call("listing the Job's pods", self.core.list_namespaced_pod, self.namespace, label_selector=f"job-name={job_name}")
        items = self._client.ApiClient().sanitize_for_serialization(pods).get("items", [])
        return items[0] if items else None

    def claim_warm(self, group: str, claim: str) -> str | None:
        """Claim a running member of ``group``'s warm pool for a session: label its pod
        ``nanoclaw.dev/claimed=<claim>`` under the pod's resourceVersion (two sessions cannot
        claim the same pod: the second patch conflicts), then its Job. The youngest first (the
        most of its deadline left). The Job's name, or None when no member is running."""
        from kubernetes.client.exceptions import ApiException

        pods = self._call(
            f"listing the warm pool of group {group}",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"{WARM_LABEL}={group},!{CLAIMED_LABEL}",
        )
        items = self._client.ApiClient().sanitize_for_serialization(pods).get("items", [])
        ready = [p for p in items if not p["metadata"].get("deletionTimestamp") and container_running(p)]
        ready.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
        for pod in ready:
            meta = pod["metadata"]
            job_name = (meta.get("labels") or {}).get("job-name")
            if not job_name:
                continue
            patch = {"metadata": {"labels": {CLAIMED_LABEL: claim}, "resourceVersion": meta["resourceVersion"]}}
            try:
                self.core.patch_namespaced_pod(meta["name"], self.namespace, patch)
            except ApiException as exc:
                if exc.status in (404, 409):  # gone, or claimed by another session first
                    continue
                raise KubeError(f"claiming warm pod {meta['name']} failed ({exc.status}): {exc.reason}") from exc
            self._call(
                f"labelling warm Job {job_name} claimed",
                self.batch.patch_namespaced_job,
                job_name,
                self.namespace,
                {"metadata": {"labels": {CLAIMED_LABEL: claim}}},
            )
            return job_name
        return None

    def failed_create(self, job_name: str) -> str | None:
        """The message of a FailedCreate event of the Job (quota, Pod Security, ...)."""
        from kubernetes.client.exceptions import ApiException

        try:
            events = self.core.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.kind=Job,involvedObject.name={job_name}"
            )
        except ApiException:
            return None  # events are an explanation, not a need: without access, the timeout tells
        for event in events.items:
            if event.reason == "FailedCreate":
                return event.message
        return None

    def attach_stdin(self, pod: str, data: str) -> None:
        """Write ``data`` to the agent's stdin and close it (stdinOnce: the agent sees EOF)."""
        from kubernetes.stream import stream

        ws = self._call(
            f"attaching to pod {pod}",
            stream,
            self.core.connect_get_namespaced_pod_attach,
            pod,
            self.namespace,
            container=AGENT_CONTAINER,
            stdin=True,
            stdout=False,
            stderr=False,
            tty=False,
            _preload_content=False,
        )
        try:
            ws.write_stdin(data)
            ws.close_channel(0)  # v5 protocol: close stdin; older: closing the session does it
            ws.update(timeout=0.2)
        finally:
            ws.close()

    def follow_log(self, pod: str, on_chunk: Callable[[str], None], timeout: float) -> threading.Thread:
        """Follow the agent's log in a thread, feeding ``on_chunk``; it ends with the container."""

        def worker() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    resp = self.core.read_namespaced_pod_log(
                        pod,
                        self.namespace,
                        container=AGENT_CONTAINER,
                        follow=True,
                        _preload_content=False,
                        _request_timeout=max(1.0, deadline - time.monotonic()),
                    )
                    for chunk in resp.stream(1024):
                        on_chunk(chunk.decode("utf-8", "replace"))
                    return
                except Exception:  # the container may not be ready for logs yet; retry until the deadline
                    time.sleep(0.2)

        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        return thread

    def log(self, pod: str) -> str:
        return self._call(
            f"reading the log of pod {pod}", self.core.read_namespaced_pod_log, pod, self.namespace, container=AGENT_CONTAINER
        )

    def delete(self, name: str, timeout: float = 60) -> bool:
        """Delete the Job and its pod (foreground); True when both are gone."""
        from kubernetes.client.exceptions import ApiException

        pod = self.pod(name)
        if pod is not None and (pod.get("status") or {}).get("phase") in ("Pending", "Running"):
            # A running agent (timeout) would get the pod's own grace period (30 s by default, and
            # an agent running as PID 1 ignores SIGTERM): ask for 1 s when allowed to delete pods.
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(pod["metadata"]["name"], self.namespace, grace_period_seconds=1)
        try:
            self.batch.delete_namespaced_job(
                name, self.namespace, body=self._client.V1DeleteOptions(propagation_policy="Foreground", grace_period_seconds=1)
            )
        except ApiException as exc:
            if exc.status != 404:
                raise KubeError(f"deleting Job {name} failed ({exc.status}): {exc.reason}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.job(name) is None and self.pod(name) is None:
                return True
            time.sleep(0.3)
        return False
