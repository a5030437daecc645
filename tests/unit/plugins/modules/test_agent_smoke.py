"""agent_smoke's pure parts: its options, judging v1 outputs (shared with agent_smoke_job), and the v2
session files it prepares and reads (real SQLite)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.nanoclaw.provision.plugins.module_utils import _v2session as v2s
from ansible_collections.nanoclaw.provision.plugins.module_utils._contract import judge_v1, payload
from ansible_collections.nanoclaw.provision.plugins.module_utils._sentinel import parse_outputs
from ansible_collections.nanoclaw.provision.plugins.modules import agent_smoke as mod


@pytest.mark.parametrize("option", ["kubeconfig", "namespace", "warm", "node_selector", "ipc_path", "session_path", "keep_job"])
def test_an_option_of_the_job_smoke_is_unsupported(option):
    errors = ArgumentSpecValidator(mod.ARGUMENT_SPEC).validate({"image": "x", option: "x"}).errors.errors
    assert [type(e) for e in errors] == [UnsupportedError], errors
    assert errors[0].args[0].startswith(f"{option}. Supported parameters include:")


def test_a_kubernetes_engine_is_no_longer_a_choice():
    messages = ArgumentSpecValidator(mod.ARGUMENT_SPEC).validate({"image": "x", "engine": "kubernetes"}).error_messages
    assert messages == ["value of engine must be one of: docker, podman, got: kubernetes"]


def test_the_v1_input_merges_over_the_defaults_and_carries_secrets_only_when_given():
    sent = payload({"prompt": "hi", "isMain": True}, {})
    assert (sent["prompt"], sent["isMain"], sent["groupFolder"]) == ("hi", True, "smoke")
    assert "secrets" not in sent
    assert payload({}, {"K": "v"})["secrets"] == {"K": "v"}


def _outputs(*values) -> list:
    text = "".join(
        f"---NANOCLAW_OUTPUT_START---\n{v if isinstance(v, str) else json.dumps(v)}\n---NANOCLAW_OUTPUT_END---\n" for v in values
    )
    return parse_outputs(text)


def test_the_result_is_not_the_session_update_that_follows_it():
    # v1.2.53's runner writes its result, then {status: success, result: null} (index.ts:709).
    outputs = _outputs(
        {"status": "success", "result": "OK", "newSessionId": "s"}, {"status": "success", "result": None, "newSessionId": "s"}
    )
    failure, msg, extra = judge_v1(outputs, 0, "fail")
    assert failure is None, msg
    assert extra["output"]["result"] == "OK"
    assert extra["outputs_count"] == 2
    assert "1 of them session updates" in msg


def test_several_results_count_without_session_updates():
    outputs = _outputs({"status": "success", "result": "a"}, {"status": "success", "result": "b"}, {"status": "success", "result": None})
    assert judge_v1(outputs, 0, "fail")[0] == "several_outputs"
    failure, msg, extra = judge_v1(outputs, 0, "last")
    assert failure is None
    assert extra["output"]["result"] == "b"
    assert "the last one is the result" in msg


def test_only_a_session_update_is_still_a_success_and_errors_stay_errors():
    assert judge_v1(_outputs({"status": "success", "result": None}), 0, "last")[0] is None
    failure, _msg, extra = judge_v1(_outputs({"status": "error", "result": None, "error": "boom"}), 1, "last")
    assert failure == "status_error"
    assert extra["agent_error"] == "boom"
    assert judge_v1(_outputs("not json"), 0, "last")[0] == "invalid_json"
    assert judge_v1([], 0, "last")[0] == "no_markers"
    assert judge_v1(_outputs({"status": "success", "result": "OK"}), 1, "last")[0] == "exit_code"


def test_the_session_is_what_the_v2_runner_reads_and_its_ack_is_read_back(tmp_path):
    session = str(tmp_path)
    v2s.init_session(session)
    assert (tmp_path / "outbox").is_dir()
    assert v2s.write_message(session, "smoke-1", "hello")
    inbound = sqlite3.connect(tmp_path / "inbound.db")
    assert inbound.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    row = inbound.execute("SELECT kind, status, trigger, channel_type, content FROM messages_in WHERE id='smoke-1'").fetchone()
    assert row[:4] == ("chat", "pending", 1, "cli")
    assert json.loads(row[4])["text"] == "hello"
    assert inbound.execute("SELECT channel_type FROM session_routing WHERE id=1").fetchone() == ("cli",)
    inbound.close()
    assert v2s.ack_status(session, "smoke-1") is None
    # What the runner does (db/messages-in.ts markCompleted), then what the module reads.
    outbound = sqlite3.connect(tmp_path / "outbound.db")
    outbound.execute("INSERT INTO processing_ack VALUES ('smoke-1', 'completed', datetime('now'))")
    outbound.execute(
        "INSERT INTO messages_out (id, seq, timestamp, kind, content) VALUES ('o1', 1, 'now', 'chat', ?)", (json.dumps({"text": "hi"}),)
    )
    outbound.commit()
    outbound.close()
    assert v2s.ack_status(session, "smoke-1") == "completed"
    assert v2s.replies(session) == ["hi"]


def test_no_inbound_db_no_message(tmp_path):
    assert v2s.write_message(str(tmp_path), "smoke-1", "hello") is False
    assert v2s.ack_status(str(tmp_path), "smoke-1") is None
