"""agent_smoke_job without a cluster: its argument rules, and its v1 and v2 sessions against a fake API.

The module runs against a real cluster in tests/k8s (`./run k8s:b`); here the API is a stand-in that
plays the pod states, the log and the claims' files, so that what a session returns is pinned.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator, ValidationResult
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.nanoclaw.provision.plugins.module_utils import _jobsmoke as js
from ansible_collections.nanoclaw.provision.plugins.module_utils import _kubejob as kj
from ansible_collections.nanoclaw.provision.plugins.modules import agent_smoke_job as mod

START = "---NANOCLAW_OUTPUT_START---"
END = "---NANOCLAW_OUTPUT_END---"
RESULT = {"status": "success", "result": "fixture echo: hi", "newSessionId": "s1"}
UPDATE = {"status": "success", "result": None, "newSessionId": "s1"}
JOB = {"kind": "Job", "metadata": {"generateName": "nanoclaw-main-"}, "spec": {"template": {"spec": {"containers": [{"name": "agent"}]}}}}


def _check(args: dict) -> ValidationResult:
    """What AnsibleModule's own validation finds, with the module's argument spec and rules."""
    validator = ArgumentSpecValidator(
        mod.ARGUMENT_SPEC,
        mutually_exclusive=mod.MUTUALLY_EXCLUSIVE,
        required_together=mod.REQUIRED_TOGETHER,
        required_if=mod.REQUIRED_IF,
    )
    return validator.validate(args)


def _validate(args: dict) -> list[str]:
    return _check(args).error_messages


def _params(**args) -> dict[str, Any]:
    """The options as the module sees them: the defaults, then ``args``."""
    params = {name: spec.get("default") for name, spec in mod.ARGUMENT_SPEC.items()}
    return {**params, "image": "localhost/agent:ok", "timeout": 5, **args}


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("option", ["engine", "user", "executable", "mounts", "close_timeout", "session_dir", "service_unit"])
def test_an_option_of_the_cli_smoke_is_unsupported(option):
    errors = _check({"image": "x", option: "x"}).errors.errors
    assert [type(e) for e in errors] == [UnsupportedError], errors
    assert errors[0].args[0].startswith(f"{option}. Supported parameters include:")


def test_v2_needs_both_claim_directories():
    assert _validate({"image": "x", "contract": "v2", "session_path": "/s", "group_path": "/g"}) == []
    missing = _validate({"image": "x", "contract": "v2"})
    assert any("contract is v2 but all of the following are missing: session_path, group_path" in e for e in missing), missing
    assert any("required together: session_path, group_path" in e for e in _validate({"image": "x", "session_path": "/s"}))


def test_a_template_comes_from_the_manifest_or_the_configmap_not_both():
    errors = _validate({"image": "x", "job_template": JOB, "job_template_configmap": "other"})
    assert any("mutually exclusive: job_template|job_template_configmap" in e for e in errors), errors
    assert _validate({"image": "x", "job_template": JOB}) == []


def test_what_the_spec_cannot_say_is_bad_input_naming_the_options():
    assert mod.bad_input(_params()) is None
    refused = mod.bad_input(_params(warm=True, env={"X": "1"}, node_selector={"a": "b"}))
    assert "env, node_selector" in refused
    assert "contract" in mod.bad_input(_params(warm=True, contract="v2", session_path="/s", group_path="/g"))
    # A null path passes required_if (it counts the key); the module still names the two.
    assert "needs session_path and group_path" in mod.bad_input(_params(contract="v2", session_path=None, group_path="/g"))


class _Templates:
    def __init__(self, **keys: dict) -> None:
        self.keys = keys

    def template(self, configmap: str, key: str) -> dict:
        return self.keys[key]


def test_templates_refuse_the_other_generation_and_a_pool_of_another_image():
    v1 = json.loads(json.dumps(JOB))
    with pytest.raises(ValueError, match="is a v1 template and contract is v2"):
        mod.templates(_Templates(**{"job-main.yaml": v1}), _params(contract="v2"))
    warm = json.loads(json.dumps(JOB))
    warm["spec"]["template"]["spec"]["containers"][0]["image"] = "localhost/agent:old"
    with pytest.raises(ValueError, match="a warm agent's image is the one it was started with"):
        mod.templates(_Templates(**{"job-main.yaml": v1, "warm-main.yaml": warm}), _params(warm=True))
    assert mod.templates(_Templates(**{"job-main.yaml": v1}), _params()) == (v1, None)


def test_build_job_names_the_v2_session_in_the_env():
    v2 = mod.build_job(_params(contract="v2", env={"A": "1"}), JOB, "abc", "smoke-abc")
    assert kj.agent_container(v2)["env"] == [{"name": "A", "value": "1"}, {"name": kj.SESSION_ENV, "value": "smoke-abc"}]
    assert kj.SESSION_ENV not in json.dumps(mod.build_job(_params(), JOB, "abc", "smoke-abc"))


# ------------------------------------------------------------------ sessions against a fake API
def _log(*outputs: dict, noise: str = "") -> str:
    return "".join(f"agent: starting\n{START}\n{noise}{json.dumps(o)}\n{END}\n" for o in outputs)


def _pod(state: dict, name: str = "nanoclaw-main-x-pod") -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"nodeName": "node-a"},
        "status": {"containerStatuses": [{"name": "agent", "image": "localhost/agent:ok", "state": state}]},
    }


class FakeKube:
    """Plays one Job: its pod pending, then running; attaching the input ends the agent with ``rc``."""

    def __init__(self, log: str = "", rc: int = 0, waiting: dict | None = None, pod_after: int = 1) -> None:
        self.text = log
        self.rc = rc
        self.waiting = waiting
        self.pod_after = pod_after
        self.polls = 0
        self.ended = False
        self.created: list[dict] = []
        self.attached: list[str] = []
        self.deleted: list[str] = []
        self.claimable: str | None = None
        self.on_poll = lambda: None

    def create(self, job: dict) -> str:
        self.created.append(job)
        return "nanoclaw-main-x"

    def claim_warm(self, group: str, claim: str) -> str | None:
        return self.claimable

    def pod(self, job_name: str) -> dict | None:
        self.polls += 1
        self.on_poll()
        if self.polls <= self.pod_after:
            return None
        if self.waiting:
            return _pod({"waiting": self.waiting})
        return _pod({"terminated": {"exitCode": self.rc}} if self.ended else {"running": {}})

    def failed_create(self, job_name: str) -> str | None:
        return None

    def follow_log(self, pod: str, on_chunk, timeout: float) -> threading.Thread:
        thread = threading.Thread(target=on_chunk, args=(self.text,))
        thread.start()
        return thread

    def attach_stdin(self, pod: str, data: str) -> None:
        self.attached.append(data)
        self.ended = True

    def log(self, pod: str) -> str:
        return self.text

    def delete(self, name: str) -> bool:
        self.deleted.append(name)
        return True


TIMINGS_V1 = {"create_to_running", "create_to_parsed", "running_to_parsed", "create_to_exit", "total"}


def test_a_v1_session_returns_the_result_timings_and_removes_the_job():
    kube = FakeKube(_log(RESULT, UPDATE))
    result = js.V1Session(_params(input={"prompt": "hi"}, secrets={"K": "s3cret"}), kube).run(JOB)
    assert result["failure"] is None, result
    assert result["msg"] == "the agent honoured the v1 contract (2 outputs, 1 of them session updates)"
    assert result["output"] == RESULT
    assert (result["job_name"], result["pod_name"], result["node_name"]) == ("nanoclaw-main-x", "nanoclaw-main-x-pod", "node-a")
    assert (result["exit_code"], result["outputs_count"], result["removed"]) == (0, 2, True)
    assert set(result["timings"]) == TIMINGS_V1
    assert result["ended_at"] >= result["started_at"]
    assert "agent: starting" in result["stdout_tail"]
    sent = json.loads(kube.attached[0])
    assert (sent["prompt"], sent["secrets"], sent["isMain"]) == ("hi", {"K": "s3cret"}, False)
    assert kube.deleted == ["nanoclaw-main-x"]


def test_outputs_the_follower_passes_on_after_the_agent_ended_still_count():
    # The pod can be seen ended before the log follower has handed over what it streamed (CI saw
    # this race once); the outputs and when they were parsed must not be lost.
    kube = FakeKube(_log(RESULT, UPDATE))
    follow = kube.follow_log

    def late_follow(pod, on_chunk, timeout):
        return follow(pod, lambda text: (time.sleep(0.5), on_chunk(text)), timeout)

    kube.follow_log = late_follow
    result = js.V1Session(_params(input={"prompt": "hi"}), kube).run(JOB)
    assert result["failure"] is None, result
    assert result["outputs_count"] == 2
    assert set(result["timings"]) == TIMINGS_V1


def test_stderr_between_the_markers_is_set_aside_and_counted():
    result = js.V1Session(_params(), FakeKube(_log(RESULT, noise="agent: a line on stderr\n"))).run(JOB)
    assert result["failure"] is None, result
    assert result["interleaved_lines"] == 1


def test_an_agent_error_is_status_error_with_the_agents_words():
    result = js.V1Session(_params(), FakeKube(_log({"status": "error", "result": None, "error": "boom"}), rc=1)).run(JOB)
    assert (result["failure"], result["agent_error"], result["exit_code"]) == ("status_error", "boom", 1)


def test_a_pod_that_cannot_start_ends_the_wait_with_its_reason():
    kube = FakeKube(waiting={"reason": "ErrImageNeverPull", "message": "not present"})
    result = js.V1Session(_params(keep_job=True), kube).run(JOB)
    assert result["failure"] == "image_missing"
    assert "ErrImageNeverPull" in result["msg"]
    assert result["timings"]["create_to_running"] is None
    assert "outputs_count" not in result
    assert "removed" not in result, "keep_job leaves the Job"
    assert kube.deleted == []


def test_a_pod_that_never_comes_is_a_timeout():
    result = js.V1Session(_params(timeout=1), FakeKube(pod_after=10**6)).run(JOB)
    assert (result["failure"], result["msg"]) == ("timeout", "the agent pod did not start within 1 s")
    assert result["pod_name"] is None


def test_a_warm_member_is_claimed_and_a_refused_top_up_only_says_so():
    kube = FakeKube(_log(RESULT))
    kube.claimable = "nanoclaw-main-warm-1"

    def create(job: dict) -> str:
        raise kj.KubeError("exceeded quota")

    kube.create = create
    result = js.V1Session(_params(warm=True), kube).run(JOB, {"kind": "Job"}, "claim-1")
    assert result["failure"] is None, result
    assert (result["job_name"], result["warm"], result["warm_topped_up"]) == ("nanoclaw-main-warm-1", True, False)
    assert result["warm_top_up_error"] == "exceeded quota"
    assert "claim" in result["timings"]


def test_with_no_warm_member_running_a_new_job_runs_the_session():
    kube = FakeKube(_log(RESULT))
    result = js.V1Session(_params(warm=True), kube).run(JOB, {"kind": "Job"}, "claim-1")
    assert (result["warm"], result["job_name"]) == (False, "nanoclaw-main-x")
    assert "warm_topped_up" not in result
    assert kube.created == [JOB]


def _claims(tmp_path: Path) -> tuple[Path, Path]:
    sessions, group = tmp_path / "sessions", tmp_path / "group"
    sessions.mkdir()
    group.mkdir()
    return sessions, group


def _runner_answers(session: Path) -> None:
    """What the v2 runner does with the queued message: the heartbeat, then the ack."""
    (session / ".heartbeat").touch()
    inbound = sqlite3.connect(session / "inbound.db")
    (message_id,) = inbound.execute("SELECT id FROM messages_in").fetchone()
    inbound.close()
    outbound = sqlite3.connect(session / "outbound.db")
    outbound.execute("INSERT INTO processing_ack VALUES (?, 'completed', datetime('now'))", (message_id,))
    outbound.commit()
    outbound.close()


def test_a_v2_session_waits_for_heartbeat_and_ack_and_leaves_the_claims_as_found(tmp_path):
    sessions, group = _claims(tmp_path)
    kube = FakeKube("Starting v2 agent-runner (provider: mock)\n")
    kube.on_poll = lambda: kube.polls == 3 and _runner_answers(sessions / "smoke-t1")
    params = _params(contract="v2", session_path=str(sessions), group_path=str(group), input={"prompt": "v2 hi"})
    result = js.run_v2(params, kube, JOB, "smoke-t1")
    assert result["failure"] is None, result
    assert result["msg"] == "the v2 agent processed the smoke message in session smoke-t1"
    assert (result["session"], result["heartbeat"], result["acknowledged"], result["replies"]) == ("smoke-t1", True, "completed", [])
    assert (result["node_name"], result["exit_code"], result["removed"]) == ("node-a", None, True)
    assert set(result["timings"]) == {"create_to_running", "create_to_heartbeat", "create_to_result", "total"}
    assert "Starting v2 agent-runner" in result["stdout_tail"]
    assert (os.listdir(sessions), os.listdir(group)) == ([], []), "the session, .claude-shared and container.json it made are gone"


def test_a_v2_agent_that_ends_before_the_ack_exited_early(tmp_path):
    sessions, group = _claims(tmp_path)
    kube = FakeKube(rc=1)
    kube.ended = True
    result = js.run_v2(_params(contract="v2", session_path=str(sessions), group_path=str(group)), kube, JOB, "smoke-t2")
    assert result["failure"] == "exited_early"
    assert result["exit_code"] == 1
    assert result["acknowledged"] is None


def test_pod_watch_notes_the_pod_and_stops_at_a_container_that_cannot_start():
    kube = FakeKube(waiting={"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}, pod_after=0)
    result: dict = {}
    watch = js.PodWatch(kube, "nanoclaw-main-x", result, deadline=float("inf"))
    assert list(watch) == []
    assert watch.stuck[0] == "pod_error"
    assert result == {"pod_name": "nanoclaw-main-x-pod", "node_name": "node-a"}
