"""Stage B, the warm pool: pre-started agents a session claims instead of creating a pod - `./run k8s:b`.

The role is converged with ``nanoclaw_kubernetes_warm_pool: 2`` in a namespace of its own (local
volumes on the first node). agent_smoke_job's ``warm: true`` claims a running member (a label under the
pod's resourceVersion), tops the pool up and runs the session through the member's stdin. Cold and
warm sessions are timed side by side (measured, not asserted; tests/output/k8s-warm-latency.txt).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
from conftest import smoke_args

from tests.harness import k8s_node
from tests.harness.module_play import run_module

NS = "nc-warm"
AGENT = "localhost/nanoclaw-fixture-agent"
POOL = 2
OUTPUT = Path(__file__).resolve().parents[1] / "output"


def _role(volumes: Path, **overrides) -> dict:
    return {
        **k8s_node.role_vars(NS, volumes, f"{AGENT}:ok"),
        "nanoclaw_kubernetes_secret_data": {"ANTHROPIC_API_KEY": "sk-warm-test-not-a-key"},
        "nanoclaw_kubernetes_warm_pool": POOL,
        **overrides,
    }


@pytest.fixture(scope="module")
def pool(cluster, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("warm-volumes")
    base.parent.chmod(0o755)
    volumes = k8s_node.make_local_volumes(base, NS)
    result = cluster.run_role(_role(volumes))
    assert not result.failed, result.out[-3000:]
    return volumes


def _members(cluster, running: bool = True) -> list[dict]:
    pods = cluster.get("pods", "-n", NS, "-l", "nanoclaw.dev/warm=main,!nanoclaw.dev/claimed")["items"]
    alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if running:
        alive = [p for p in alive if any("running" in (s.get("state") or {}) for s in p["status"].get("containerStatuses", []))]
    return alive


def _wait_for_pool(cluster, seconds: float = 90) -> list[dict]:
    deadline = time.monotonic() + seconds
    while len(members := _members(cluster)) < POOL:
        assert time.monotonic() < deadline, f"{len(members)} of {POOL} warm agents running after {seconds} s"
        time.sleep(0.3)
    return members


def _smoke(cluster, **args) -> dict:
    return smoke_args(cluster, NS, **args)


def test_the_role_starts_the_pool_and_a_rerun_changes_nothing(cluster, pool):
    members = _wait_for_pool(cluster)
    assert len(members) == POOL
    jobs = cluster.get("jobs", "-n", NS, "-l", "nanoclaw.dev/warm=main")["items"]
    assert all(j["metadata"]["name"].startswith("nanoclaw-main-warm-") for j in jobs)
    again = cluster.run_role(_role(pool))
    assert not again.failed, again.out[-3000:]
    assert again.changed == 0, again.out[-3000:]
    assert len(cluster.get("jobs", "-n", NS, "-l", "nanoclaw.dev/warm=main")["items"]) == POOL


def test_a_session_takes_a_warm_agent_and_the_pool_is_topped_up(cluster, pool, tmp_path):
    before = {p["metadata"]["name"] for p in _wait_for_pool(cluster)}
    # A warm FIXTURE started before the session, with no IPC wait of the test's: it waits for
    # input/_close after its result, which the module's IPC round trip writes.
    play = run_module(
        tmp_path,
        "agent_smoke_job",
        [_smoke(cluster, warm=True, input={"prompt": "warm start"}, ipc_path=str(pool / NS / "nanoclaw-ipc-main"))],
    )
    result = play.results[0]
    assert not result.get("failed"), json.dumps(result, indent=1)[-3000:]
    assert result["warm"] is True
    assert result["warm_topped_up"] is True
    assert result["pod_name"] in before
    assert result["output"]["result"] == "fixture echo: warm start"
    assert result["ipc"]["closed"] is True
    assert result["removed"] is True
    assert result["timings"]["claim"] <= result["timings"]["create_to_parsed"]
    after = {p["metadata"]["name"] for p in _wait_for_pool(cluster)}
    assert result["pod_name"] not in after
    assert len(after) == POOL


def test_warm_refuses_what_only_a_new_job_can_have(cluster, pool, tmp_path):
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, warm=True, env={"X": "1"}, node_selector={"a": "b"})])
    result = play.results[0]
    assert result["failure"] == "bad_input"
    assert "env, node_selector" in result["msg"]
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, warm=True, image=f"{AGENT}:hang")])
    assert play.results[0]["failure"] == "api_error"
    assert "a warm agent's image is the one it was started with" in play.results[0]["msg"]


def test_warm_and_cold_starts_side_by_side(cluster, pool, tmp_path):
    """Measured, not asserted: claim -> parsed for warm sessions, create -> parsed for new Jobs."""
    ipc = str(pool / NS / "nanoclaw-ipc-main")
    samples: dict[str, list[float]] = {"warm": [], "cold": []}
    for index in range(3):
        for kind in ("warm", "cold"):
            _wait_for_pool(cluster)
            args = {"warm": True} if kind == "warm" else {"env": {"NANOCLAW_FIXTURE_IPC_WAIT": "60"}}
            play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, input={"prompt": f"{kind} {index}"}, ipc_path=ipc, **args)])
            result = play.results[0]
            assert not result.get("failed"), json.dumps(result, indent=1)[-2000:]
            assert result.get("warm", False) is (kind == "warm")
            samples[kind].append(result["timings"]["create_to_parsed"])
    lines = ["Agent start, 3 sequential sessions each, same namespace and node (seconds to the parsed result)"]
    for kind, label in (("cold", "new Job: create -> parsed"), ("warm", "warm pool: claim -> parsed")):
        values = sorted(samples[kind])
        lines.append(f"  {label:<28} p50 {statistics.median(values):6.2f}  min {values[0]:6.2f}  max {values[-1]:6.2f}  all {values}")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "k8s-warm-latency.txt").write_text("\n".join(lines) + "\n")


def test_turning_the_pool_off_removes_it(cluster, pool):
    off = cluster.run_role(_role(pool, nanoclaw_kubernetes_warm_pool=0))
    assert not off.failed, off.out[-3000:]
    assert off.changed >= POOL, "each warm Job removed is a change"
    assert cluster.get("jobs", "-n", NS, "-l", "nanoclaw.dev/warm")["items"] == []
    role = cluster.get("role", "nanoclaw-controller", "-n", NS)
    assert all("patch" not in rule["verbs"] for rule in role["rules"]), "the claim's permission goes with the pool"


def test_a_warm_pool_for_v2_is_refused_naming_the_variables(cluster, pool):
    bad = cluster.run_role(_role(pool, nanoclaw_kubernetes_generation="v2"))
    assert bad.failed
    assert "nanoclaw_kubernetes_warm_pool needs nanoclaw_kubernetes_generation v1" in bad.text
