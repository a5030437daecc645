"""Stage B, v2 agents as Jobs: the role's v2 template and agent_smoke_job's v2 contract - `./run k8s:b`.

The role is converged with ``nanoclaw_kubernetes_generation: v2`` in a namespace of its own, with
local static volumes on the first node. The project claim holds the FIXTURE runner source (v2's
image has none: the host mounts container/agent-runner/src at /app/src). agent_smoke_job prepares a
session folder in the sessions claim as v2's host does, the FIXTURE agent (v2 mode, started by the
template's `bash -c 'exec bun run /app/src/index.ts'`) polls its inbound.db, acknowledges the
message in outbound.db and touches the heartbeat, all read on the host's side of the claims.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import smoke_args

from tests.harness import k8s_node
from tests.harness.module_play import run_module

NS = "nc-v2"
AGENT = "localhost/nanoclaw-fixture-agent"
RUNNER = Path(__file__).resolve().parents[1] / "fixtures" / "agent" / "project" / "container" / "agent-runner" / "src"


@pytest.fixture(scope="module")
def v2_claims(cluster, tmp_path_factory) -> Path:
    """The role converged with the v2 template; the FIXTURE runner source in the project claim."""
    base = tmp_path_factory.mktemp("v2-volumes")
    base.parent.chmod(0o755)
    volumes = k8s_node.make_local_volumes(base, NS)
    source = volumes / NS / "nanoclaw-project-ro" / "container" / "agent-runner" / "src"
    shutil.copytree(RUNNER, source)
    for path in (source.parent.parent, source.parent, source):
        path.chmod(0o755)
    result = cluster.run_role(
        {
            **k8s_node.role_vars(NS, volumes, f"{AGENT}:ok"),
            "nanoclaw_kubernetes_generation": "v2",
            "nanoclaw_kubernetes_secret_data": {"ANTHROPIC_API_KEY": "sk-v2-test-not-a-key"},
        }
    )
    assert not result.failed, result.out[-3000:]
    return volumes / NS


def _smoke(cluster, claims: Path, **args) -> dict:
    paths = {"session_path": str(claims / "nanoclaw-sessions-main"), "group_path": str(claims / "nanoclaw-group-main")}
    return smoke_args(cluster, NS, **{"contract": "v2", **paths, **args})


def test_the_v2_template_has_v2s_layout(cluster, v2_claims):
    job = yaml.safe_load(cluster.get("configmap", "nanoclaw-agent-job-template", "-n", NS)["data"]["job-main.yaml"])
    agent = job["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert agent["command"] == ["bash", "-c", "exec bun run /app/src/index.ts"]
    assert "stdin" not in agent
    assert mounts["/workspace"] == {"name": "sessions", "mountPath": "/workspace", "subPathExpr": "$(NANOCLAW_SESSION)"}
    assert mounts["/workspace/agent"]["name"] == "group"
    assert mounts["/workspace/agent/container.json"]["readOnly"] is True
    assert mounts["/home/node/.claude"]["subPath"] == ".claude-shared"
    assert mounts["/app/src"] == {"name": "project", "mountPath": "/app/src", "subPath": "container/agent-runner/src", "readOnly": True}
    assert "/workspace/ipc" not in mounts
    assert {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]} == {"tmp", "home", "group", "sessions", "project"}


def test_a_v2_session_runs_as_a_job_and_leaves_the_claims_as_it_found_them(cluster, v2_claims, tmp_path):
    sessions, group = v2_claims / "nanoclaw-sessions-main", v2_claims / "nanoclaw-group-main"
    before = (sorted(p.name for p in sessions.iterdir()), sorted(p.name for p in group.iterdir()))
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, v2_claims, input={"prompt": "v2 as a Job"})])
    result = play.results[0]
    assert not result.get("failed"), json.dumps(result, indent=1)[-3000:]
    assert result["failure"] is None
    assert result["heartbeat"] is True
    assert result["acknowledged"] == "completed"
    assert result["node_name"] == k8s_node.NODE_NAME
    assert result["session"].startswith("smoke-")
    timings = result["timings"]
    # create_to_running is null when the runner was done before the API reported its container running.
    assert 0 < timings["create_to_result"] <= timings["total"]
    assert 0 < timings["create_to_heartbeat"] <= timings["total"]
    assert "Starting v2 agent-runner (provider: mock)" in result["stdout_tail"]
    assert result["removed"] is True
    # The session folder, the container.json and the empty .claude-shared it made are gone again.
    assert (sorted(p.name for p in sessions.iterdir()), sorted(p.name for p in group.iterdir())) == before


def test_a_v1_smoke_against_the_v2_template_names_the_variable(cluster, v2_claims, tmp_path):
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, v2_claims, contract="v1")])
    result = play.results[0]
    assert result["failure"] == "api_error"
    assert "is a v2 template and contract is v1" in result["msg"]
    assert "nanoclaw_kubernetes_generation: v1" in result["msg"]


def test_v2_job_mode_without_the_claims_directories_is_bad_input(cluster, v2_claims, tmp_path):
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, v2_claims, session_path=None)])
    result = play.results[0]
    assert result["failure"] == "bad_input"
    assert "needs session_path and group_path" in result["msg"]
