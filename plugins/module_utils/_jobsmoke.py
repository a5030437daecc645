# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One smoke session of an agent as a Kubernetes Job: the body of the agent_smoke_job module.

:class:`V1Session` runs the v1 contract - the Job created from the template (or a member of the
group's warm pool claimed), the JSON input written to the agent's stdin through attach, the
outputs parsed from the pod log, the IPC round trip through the group's IPC claim. :func:`run_v2`
runs the v2 contract - a session folder prepared in the sessions claim, the heartbeat and the
message's acknowledgement read on this host's side of the claims. Both take the module's options
as a mapping and return the result's keys, ``failure`` and ``msg`` included; what the API refuses
is raised as :class:`_kubejob.KubeError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.nanoclaw.provision.plugins.module_utils import _kubejob as kj
from ansible_collections.nanoclaw.provision.plugins.module_utils import _v2session as v2s
from ansible_collections.nanoclaw.provision.plugins.module_utils._contract import (
    DEFAULT_V2_CONFIG,
    heartbeat_after,
    judge_v1,
    payload,
    seconds,
    tail,
)
from ansible_collections.nanoclaw.provision.plugins.module_utils._sentinel import SentinelParser


@dataclass(frozen=True)
class Clock:
    """A session's time: its monotonic start and deadline, and the epoch instant of its start."""

    started: float
    deadline: float
    epoch: float

    @classmethod
    def start(cls, timeout: float) -> Clock:
        started = time.monotonic()
        return cls(started, started + timeout, time.time())

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class LogFeed:
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


def wait_for(predicate: Callable[[], bool], deadline: float, interval: float = 0.1) -> bool:
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def terminated(kube: kj.KubeJobs, job_name: str) -> bool:
    pod = kube.pod(job_name)
    return pod is not None and kj.container_exit_code(pod) is not None


def started(kube: kj.KubeJobs, job_name: str) -> bool:
    pod = kube.pod(job_name)
    return pod is not None and kj.container_started(pod)


class PodWatch:
    """The Job's pod, polled every ``interval`` until ``deadline`` - the head both session loops share.

    Each poll notes the pod's name and node in ``result`` and yields the pod (None while the Job
    controller has not made it yet). A container that cannot start (:func:`_kubejob.waiting_failure`)
    ends the polls with ``stuck`` set to (failure, message); the deadline ends them with it None.
    """

    def __init__(self, kube: kj.KubeJobs, job_name: str, result: dict[str, Any], deadline: float, interval: float = 0.1) -> None:
        self.kube = kube
        self.job_name = job_name
        self.result = result
        self.deadline = deadline
        self.interval = interval
        self.stuck: tuple[str, str] | None = None

    def __iter__(self) -> Iterator[dict | None]:
        while time.monotonic() < self.deadline:
            pod = self.kube.pod(self.job_name)
            if pod is not None:
                self.result["pod_name"] = pod["metadata"]["name"]
                self.result["node_name"] = pod.get("spec", {}).get("nodeName")
                self.stuck = kj.waiting_failure(pod)
                if self.stuck:
                    return
            yield pod
            time.sleep(self.interval)


def ipc_round_trip(
    params: Mapping[str, Any], kube: kj.KubeJobs, job_name: str, feed: LogFeed, deadline: float
) -> tuple[dict, str | None, str]:
    """The follow-up message through the group's IPC claim, the agent's reply, then ``_close``:
    (what the result's ``ipc`` says, failure, message)."""
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

    got = wait_for(replied, ipc_deadline)
    info: dict = {"sent": sent, "reply_seconds": seconds(time.monotonic() - sent_at) if got else None}
    if got:
        name = sorted(replies)[0]
        info["reply_file"] = name
        info["reply"] = replies[name]
        os.unlink(os.path.join(ipc_path, "messages", name))  # the host consumes it, as NanoClaw's does
    kj.ipc_close(ipc_path)
    closed = wait_for(lambda: terminated(kube, job_name), min(deadline, time.monotonic() + params["ipc_timeout"]), 0.2)
    info["closed"] = closed
    outputs = [o.value for o in kj.untangle_all(feed.parser.outputs[outputs_before:])[0] if o.valid]
    info["reply_outputs"] = [o for o in outputs if not (isinstance(o, dict) and o.get("result") is None)]
    info["input_left"] = sorted(os.listdir(os.path.join(ipc_path, "input")))
    if not got:
        return info, "ipc_no_reply", f"the agent wrote no reply into messages/ of {ipc_path} within {params['ipc_timeout']} s of {sent}"
    if not closed:
        return info, "ipc_not_closed", f"the agent answered over IPC but did not end within {params['ipc_timeout']} s of input/_close"
    return info, None, ""


class V1Session:
    """One v1 session as a Job: created from ``job``, or, with ``warm`` (the pool's Job manifest), a
    running member of the group's warm pool claimed (the pool topped up from ``warm`` at once; a new
    Job from ``job`` when no member runs). Timings count from the create request or the claim."""

    def __init__(self, params: Mapping[str, Any], kube: kj.KubeJobs) -> None:
        self.params = params
        self.kube = kube
        if params["ipc_path"]:
            kj.ipc_prepare(params["ipc_path"])
        # The session's time starts here: what follows is the claim or the create request.
        self.clock = Clock.start(params["timeout"])
        self.timings: dict[str, Any] = {}
        self.result: dict[str, Any] = {}

    def run(self, job: dict, warm: dict | None = None, claim: str = "") -> dict[str, Any]:
        job_name, warm_result = self._claim_or_create(job, warm, claim)
        self.result = {"job_name": job_name, "pod_name": None, "node_name": None, "started_at": round(self.clock.epoch, 3), **warm_result}
        failure: str | None = None
        msg = ""
        try:
            failure, msg = self._session(job_name)
        finally:
            if not self.params["keep_job"]:
                self.result["removed"] = self.kube.delete(job_name)
            self.timings["total"] = seconds(self.clock.elapsed())
            self.result["timings"] = self.timings
            self.result["ended_at"] = round(self.clock.epoch + self.timings["total"], 3)
        self.result.update(failure=failure, msg=msg)
        return self.result

    def _claim_or_create(self, job: dict, warm: dict | None, claim: str) -> tuple[str, dict[str, Any]]:
        """The session's Job, and the ``warm`` result keys when a warm member was asked for."""
        found: dict[str, Any] = {}
        job_name = None
        if warm is not None:
            job_name = self.kube.claim_warm(self.params["group"], claim)
            self.timings["claim"] = seconds(self.clock.elapsed())
            found["warm"] = job_name is not None
            if job_name:
                # The next session finds a member again; a refusal (the quota) costs only that.
                try:
                    self.kube.create(warm)
                    found["warm_topped_up"] = True
                except kj.KubeError as exc:
                    found.update(warm_topped_up=False, warm_top_up_error=str(exc))
        if job_name is None:
            job_name = self.kube.create(job)
        return job_name, found

    def _session(self, job_name: str) -> tuple[str | None, str]:
        pod, running_at, stuck = self._wait_running(job_name)
        self.timings["create_to_running"] = seconds(running_at)
        verdict: tuple[str | None, str] = (None, "")
        if stuck is not None:
            verdict = stuck
        elif running_at is None:
            verdict = ("timeout", f"the agent pod did not start within {self.params['timeout']} s")
        feed = LogFeed(self.clock.started)
        if verdict[0] is None:
            verdict = self._converse(job_name, pod, running_at, feed)
            self.result["outputs_count"] = len(feed.parser.outputs)
        if self.result["pod_name"]:
            try:
                self.result["stdout_tail"] = tail(self.kube.log(self.result["pod_name"]))
            except kj.KubeError:
                self.result["stdout_tail"] = tail(feed.text)
        return verdict

    def _wait_running(self, job_name: str) -> tuple[dict | None, float | None, tuple[str, str] | None]:
        """(the pod, seconds until its agent container ran or had ended, failure). Before the pod
        exists, the Job's events say when the controller could not make it (quota, Pod Security)."""
        watch = PodWatch(self.kube, job_name, self.result, self.clock.deadline)
        next_event_check = self.clock.started + 1
        for pod in watch:
            if pod is not None:
                if kj.container_started(pod):
                    return pod, self.clock.elapsed(), None
            elif time.monotonic() >= next_event_check:
                rejected = self.kube.failed_create(job_name)
                if rejected:
                    return None, None, ("job_rejected", f"the Job controller could not create the agent pod: {rejected}")
                next_event_check = time.monotonic() + 1
        return None, None, watch.stuck

    def _converse(self, job_name: str, pod: dict | None, running_at: float | None, feed: LogFeed) -> tuple[str | None, str]:
        """The input on stdin, the first output, the IPC round trip when asked for, the agent's end."""
        params, kube, deadline = self.params, self.kube, self.clock.deadline
        pod_name = self.result["pod_name"]
        follower = kube.follow_log(pod_name, feed, max(1.0, deadline - time.monotonic()))
        try:
            kube.attach_stdin(pod_name, json.dumps(payload(params["input"], params["secrets"])))
        except kj.KubeError as exc:
            # An agent that exits at once cannot be attached to; its log still says why.
            self.result["attach_error"] = str(exc)
        wait_for(lambda: bool(feed.parser.outputs) or terminated(kube, job_name), deadline, 0.05)
        if not feed.parser.outputs:
            # An agent that ended quickly can be seen ended before the follower has passed on the
            # log it streamed; let the follower finish so those outputs (and when they came) count.
            follower.join(timeout=10)
        if feed.ended_at:
            self.timings["create_to_parsed"] = seconds(feed.ended_at[0])
            self.timings["running_to_parsed"] = seconds(feed.ended_at[0] - running_at)
        session_outputs = list(feed.parser.outputs)
        last = session_outputs[-1] if session_outputs else None
        if params["ipc_path"] and last is not None and last.valid and last.value.get("status") == "success":
            self.result["ipc"], failure, msg = ipc_round_trip(params, kube, job_name, feed, deadline)
            if failure is not None:
                return failure, msg
        if not wait_for(lambda: terminated(kube, job_name), deadline, 0.2):
            return "timeout", f"the agent did not finish within {params['timeout']} s; Job {job_name} deleted"
        self.timings["create_to_exit"] = seconds(self.clock.elapsed())
        follower.join(timeout=10)
        return self._judge(kube.pod(job_name) or pod, len(session_outputs))

    def _judge(self, pod: dict | None, session_outputs: int) -> tuple[str | None, str]:
        rc = kj.container_exit_code(pod) if pod is not None else None
        self.result["exit_code"] = rc
        # The whole log, once the container has ended, is what is judged.
        full = SentinelParser()
        full.feed(self.kube.log(self.result["pod_name"]))
        outputs, interleaved = kj.untangle_all(full.outputs)
        if interleaved:
            self.result["interleaved_lines"] = interleaved
        # After an IPC round trip, the follow-up's outputs are the ipc result's, not the session's.
        judged = outputs[:session_outputs] if self.params["ipc_path"] and session_outputs else outputs
        failure, msg, extra = judge_v1(judged, rc, self.params["several_outputs"])
        self.result.update(extra)
        return failure, msg


@dataclass(frozen=True)
class V2Message:
    """The smoke message queued in the session folder (as this host sees it), and since when a
    touched heartbeat is the agent's (epoch seconds)."""

    session: str
    message_id: str
    since: float

    def heartbeat(self) -> bool:
        return heartbeat_after(os.path.join(self.session, ".heartbeat"), self.since)

    def ack(self) -> str | None:
        return v2s.ack_status(self.session, self.message_id)


@dataclass
class V2Marks:
    """When (seconds from the create request) the v2 agent's container ran, its heartbeat was
    touched and the message was marked completed; its exit code once it ended."""

    running_at: float | None = None
    seen_at: float | None = None
    acked_at: float | None = None
    exit_code: int | None = None


def run_v2(params: Mapping[str, Any], kube: kj.KubeJobs, job: dict, session_id: str) -> dict[str, Any]:
    """One v2 session as a Job: the session folder prepared in the sessions claim, a message queued in
    its inbound.db, then the heartbeat and the message's completion awaited on this host's view of it."""
    made = kj.v2_prepare(params["session_path"], params["group_path"], session_id, {**DEFAULT_V2_CONFIG, **params["container_config"]})
    session = made["session"]
    message_id = f"smoke-{uuid.uuid4().hex[:12]}"
    result: dict[str, Any] = {"session": session_id, "pod_name": None, "node_name": None}
    timings: dict[str, Any] = {}
    failure: str | None = None
    msg = ""
    clock = None
    try:
        v2s.write_message(session, message_id, str(payload(params["input"], params["secrets"])["prompt"]))
        message = V2Message(session, message_id, time.time() - 1)  # mtime granularity
        clock = Clock.start(params["timeout"])
        job_name = kube.create(job)
        result.update(job_name=job_name, started_at=round(clock.epoch, 3))
        watch = PodWatch(kube, job_name, result, clock.deadline)
        marks = _watch_v2(watch, clock, message)
        ack = message.ack()
        result.update(
            heartbeat=marks.seen_at is not None or message.heartbeat(),
            acknowledged=ack,
            replies=v2s.replies(session),
            exit_code=marks.exit_code,
        )
        timings.update(
            create_to_running=seconds(marks.running_at),
            create_to_heartbeat=seconds(marks.seen_at),
            create_to_result=seconds(marks.acked_at),
        )
        if watch.stuck:
            failure, msg = watch.stuck
        elif result["pod_name"]:
            # The runner can finish before the API reports its container running (the kubelet's
            # status lags): its log can be read once it does.
            wait_for(lambda: started(kube, job_name), min(clock.deadline, time.monotonic() + 10), 0.2)
            with contextlib.suppress(kj.KubeError):
                result["stdout_tail"] = tail(kube.log(result["pod_name"]))
        if failure is None:
            failure, msg = _judge_v2(marks, result, ack, params["timeout"])
    finally:
        if result.get("job_name") and not params["keep_job"]:
            result["removed"] = kube.delete(result["job_name"])
        if not params["keep_job"]:
            kj.v2_cleanup(made)
        if clock is not None and "started_at" in result:
            timings["total"] = seconds(clock.elapsed())
            result["ended_at"] = round(result["started_at"] + timings["total"], 3)
        result["timings"] = timings
    result.update(failure=failure, msg=msg or f"the v2 agent processed the smoke message in session {session_id}")
    return result


def _watch_v2(watch: PodWatch, clock: Clock, message: V2Message) -> V2Marks:
    """Poll until the heartbeat is touched and the message completed, or the container ended."""
    marks = V2Marks()
    for pod in watch:
        if pod is not None:
            if marks.running_at is None and kj.container_started(pod):
                marks.running_at = clock.elapsed()
            marks.exit_code = kj.container_exit_code(pod)
        if marks.seen_at is None and message.heartbeat():
            marks.seen_at = clock.elapsed()
        if marks.acked_at is None and message.ack() == "completed":
            marks.acked_at = clock.elapsed()
        if (marks.seen_at is not None and marks.acked_at is not None) or marks.exit_code is not None:
            break
    return marks


def _judge_v2(marks: V2Marks, result: dict[str, Any], ack: str | None, timeout: int) -> tuple[str | None, str]:
    if marks.exit_code is not None and (not result["heartbeat"] or ack != "completed"):
        return "exited_early", f"the agent exited with code {marks.exit_code} before it had processed the smoke message"
    if marks.running_at is None and not result["heartbeat"]:
        return "timeout", f"the agent pod did not start within {timeout} s"
    if not result["heartbeat"]:
        return "no_heartbeat", f"/workspace/.heartbeat was not touched within {timeout} s"
    if ack != "completed":
        return "not_acknowledged", f"the smoke message is {ack or 'not acknowledged'} after {timeout} s"
    return None, ""
