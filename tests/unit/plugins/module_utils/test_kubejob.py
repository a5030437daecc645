"""The pure parts of agent_smoke_job: the Job made from the template, pod states, IPC files.

The module's sessions run against a fake API in tests/unit/plugins/modules/test_agent_smoke_job.py,
and against a real cluster in tests/k8s/test_stage_b*.py (`./run k8s:b`).
"""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.nanoclaw.provision.plugins.module_utils._kubejob import (
    SMOKE_LABEL,
    container_exit_code,
    container_running,
    container_started,
    ipc_close,
    ipc_message_file,
    ipc_prepare,
    ipc_replies,
    prepare_job,
    template_generation,
    untangle,
    untangle_all,
    v2_cleanup,
    v2_prepare,
    waiting_failure,
)
from ansible_collections.nanoclaw.provision.plugins.module_utils._sentinel import decode

TEMPLATE = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"generateName": "nanoclaw-main-", "labels": {"app.kubernetes.io/component": "agent"}},
    "spec": {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/component": "agent"}},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {"name": "sidecar", "image": "other"},
                    {"name": "agent", "image": "registry.example/agent:1", "env": [{"name": "HOME", "value": "/home/node"}]},
                ],
            },
        },
    },
}


def test_prepare_job_sets_image_env_security_context_and_label_without_touching_the_template():
    before = json.dumps(TEMPLATE, sort_keys=True)
    job = prepare_job(
        TEMPLATE,
        "localhost/agent:ok",
        "abc123",
        env={"HOME": "/tmp/home", "EXTRA": 1},
        pod_security_context={"runAsUser": 1000650000, "runAsGroup": 0},
    )
    assert json.dumps(TEMPLATE, sort_keys=True) == before
    pod = job["spec"]["template"]["spec"]
    agent = pod["containers"][1]
    assert agent["image"] == "localhost/agent:ok"
    assert pod["containers"][0]["image"] == "other", "only the agent container changes"
    assert agent["env"] == [{"name": "HOME", "value": "/tmp/home"}, {"name": "EXTRA", "value": "1"}]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1000650000,
        "runAsGroup": 0,
    }
    assert job["metadata"]["labels"][SMOKE_LABEL] == "abc123"
    assert job["spec"]["template"]["metadata"]["labels"][SMOKE_LABEL] == "abc123"
    assert job["metadata"]["generateName"] == "nanoclaw-main-"


def test_prepare_job_merges_the_node_selector_into_the_templates():
    template = json.loads(json.dumps(TEMPLATE))
    template["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "node-a", "disk": "ssd"}
    job = prepare_job(template, "img", "id", node_selector={"kubernetes.io/hostname": "node-b"})
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "node-b", "disk": "ssd"}
    assert template["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] == "node-a"
    assert "nodeSelector" not in prepare_job(TEMPLATE, "img", "id")["spec"]["template"]["spec"]


def test_prepare_job_with_a_name_drops_generate_name():
    job = prepare_job(TEMPLATE, "img", "id", name="smoke-1")
    assert job["metadata"]["name"] == "smoke-1"
    assert "generateName" not in job["metadata"]


@pytest.mark.parametrize("template", [{"kind": "Pod", "spec": {}}, {"kind": "Job", "spec": {}}])
def test_prepare_job_refuses_what_is_not_a_job_template(template):
    with pytest.raises(ValueError, match="not a batch/v1 Job"):
        prepare_job(template, "img", "id")


TIMED_OUT = "timed out waiting for the condition"


def _pod(state: dict, image: str = "localhost/agent:ok") -> dict:
    return {"status": {"containerStatuses": [{"name": "agent", "image": image, "state": state}]}}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"waiting": {"reason": "ErrImageNeverPull", "message": "not present with pull policy Never"}}, "image_missing"),
        ({"waiting": {"reason": "ImagePullBackOff"}}, "image_missing"),
        ({"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}}, "pod_error"),
        # The kubelet retries this one by itself; the smoke test's timeout still bounds it.
        ({"waiting": {"reason": "CreateContainerConfigError", "message": f"failed to sync secret cache: {TIMED_OUT}"}}, None),
        ({"waiting": {"reason": "ContainerCreating"}}, None),
        ({"running": {"startedAt": "2026-11-23T00:00:00Z"}}, None),
    ],
)
def test_waiting_failure(state, expected):
    found = waiting_failure(_pod(state))
    assert (found[0] if found else None) == expected
    if found:
        assert state["waiting"]["reason"] in found[1]


def test_container_states():
    assert container_running(_pod({"running": {}}))
    assert not container_running(_pod({"waiting": {"reason": "ContainerCreating"}}))
    assert container_exit_code(_pod({"terminated": {"exitCode": 3}})) == 3
    assert container_exit_code(_pod({"running": {}})) is None
    assert container_exit_code({"status": {}}) is None
    # Started: running, or already ended before the API ever reported it running.
    assert container_started(_pod({"running": {}}))
    assert container_started(_pod({"terminated": {"exitCode": 0}}))
    assert not container_started(_pod({"waiting": {"reason": "ContainerCreating"}}))


def test_ipc_files_are_owned_like_the_claim_directory(tmp_path):
    claim = tmp_path / "ipc"
    claim.mkdir()
    ipc_prepare(str(claim))
    assert sorted(p.name for p in claim.iterdir()) == ["input", "messages", "tasks"]
    name = ipc_message_file(str(claim), "hello", 1795463869.69)
    assert name == "1795463869690-smoke.json"
    written = claim / "input" / name
    assert json.loads(written.read_text()) == {"type": "message", "text": "hello"}
    assert oct(written.stat().st_mode & 0o777) == oct(0o660)
    assert [p.name for p in (claim / "input").iterdir()] == [name], "no temporary file left behind"
    ipc_close(str(claim))
    assert (claim / "input" / "_close").exists()
    st = claim.stat()
    assert (written.stat().st_uid, written.stat().st_gid) == (st.st_uid, st.st_gid)


def test_ipc_replies_skips_partial_and_foreign_files(tmp_path):
    claim = tmp_path / "ipc"
    claim.mkdir()
    ipc_prepare(str(claim))
    outbox = claim / "messages"
    (outbox / "reply-1.json").write_text('{"type": "message", "text": "hi"}')
    (outbox / ".reply-2.json.tmp").write_text('{"type": "mess')
    (outbox / "broken.json").write_text("{not json")
    (outbox / "notes.txt").write_text("x")
    assert ipc_replies(str(claim)) == {"reply-1.json": {"type": "message", "text": "hi"}}


def test_ipc_prepare_needs_the_claim_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        ipc_prepare(os.fspath(tmp_path / "missing"))


def test_untangle_sets_aside_stderr_lines_merged_into_the_pod_log():
    # As seen on the test node: containerd writes stdout and stderr into one log, line by line.
    raw = '\nfixture agent: a log line on stderr\n{"status": "success", "result": "x"}\n'
    output, set_aside = untangle(decode(raw))
    assert output.valid
    assert output.value == {"status": "success", "result": "x"}
    assert set_aside == 1


@pytest.mark.parametrize(
    "raw",
    [
        '{"status": "success", "result": fixture-not-json',  # broken JSON stays broken
        '{"a": 1}\n{"b": 2}',  # two candidates: ambiguous, not guessed
        "[1, 2]",  # not an object
    ],
)
def test_untangle_leaves_what_it_cannot_tell_apart(raw):
    output, set_aside = untangle(decode(raw))
    assert not output.valid
    assert set_aside == 0


def test_untangle_all_keeps_order_and_counts():
    outputs = [decode('{"n": 1}'), decode('noise\n{"n": 2}'), decode("nothing")]
    untangled, set_aside = untangle_all(outputs)
    assert [o.value if o.valid else None for o in untangled] == [{"n": 1}, {"n": 2}, None]
    assert set_aside == 1


def _v2_template() -> dict:
    template = json.loads(json.dumps(TEMPLATE))
    agent = template["spec"]["template"]["spec"]["containers"][1]
    agent["volumeMounts"] = [
        {"name": "sessions", "mountPath": "/workspace", "subPathExpr": "$(NANOCLAW_SESSION)"},
        {"name": "group", "mountPath": "/workspace/agent"},
    ]
    return template


def test_template_generation_tells_a_v2_template_by_its_session_mount():
    assert template_generation(_v2_template()) == "v2"
    assert template_generation(TEMPLATE) == "v1"
    v1_like = _v2_template()
    v1_like["spec"]["template"]["spec"]["containers"][1]["volumeMounts"][0] = {"name": "group", "mountPath": "/workspace/group"}
    assert template_generation(v1_like) == "v1"


def test_v2_prepare_makes_the_session_as_a_v2_host_and_cleanup_removes_only_that(tmp_path):
    sessions, group = tmp_path / "sessions", tmp_path / "group"
    sessions.mkdir()
    group.mkdir()
    (sessions / "other-session").mkdir()
    made = v2_prepare(str(sessions), str(group), "smoke-1", {"provider": "mock"})
    session = sessions / "smoke-1"
    assert sorted(p.name for p in session.iterdir()) == ["inbound.db", "outbound.db", "outbox"]
    assert oct(session.stat().st_mode & 0o7777) == "0o2770"
    assert oct((session / "inbound.db").stat().st_mode & 0o777) == "0o660"
    assert json.loads((group / "container.json").read_text()) == {"provider": "mock"}
    assert (sessions / ".claude-shared").is_dir()
    v2_cleanup(made)
    assert sorted(p.name for p in sessions.iterdir()) == ["other-session"]
    assert list(group.iterdir()) == []


def test_v2_prepare_keeps_the_groups_own_container_json_and_claude_state(tmp_path):
    sessions, group = tmp_path / "sessions", tmp_path / "group"
    (sessions / ".claude-shared").mkdir(parents=True)
    (sessions / ".claude-shared" / "settings.json").write_text("{}")
    group.mkdir()
    (group / "container.json").write_text('{"provider": "claude"}')
    made = v2_prepare(str(sessions), str(group), "smoke-2", {"provider": "mock"})
    assert made["container_json"] is None
    assert made["claude_shared"] is None
    v2_cleanup(made)
    assert (group / "container.json").read_text() == '{"provider": "claude"}'
    assert (sessions / ".claude-shared" / "settings.json").exists()
    assert not (sessions / "smoke-2").exists()


def test_v2_prepare_refuses_a_missing_claim_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="group_path"):
        v2_prepare(str(tmp_path), str(tmp_path / "missing"), "smoke-3", {})
