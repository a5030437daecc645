"""Stage B, two nodes: pods on both reach each other, agents share their group's data across nodes,
concurrent agents spread over both - `./run k8s:b`, after tests/k8s/test_stage_b.py.

The harness starts two nodes (tests/harness/k8s_node.py NODES), each with its own containerd,
bridge, pod range, kubelet and cgroup root, on this one machine. The role is converged here with
ReadWriteMany claims on hostPath static volumes and no node pinned: both kubelets mount the same
directory, the stand-in for a network filesystem this kernel cannot mount (no NFS client).
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

NS = "nc-two-nodes"
NET_NS = "nc-two-nodes-net"
AGENT = "localhost/nanoclaw-fixture-agent"
NODE_A, NODE_B = (node.name for node in k8s_node.NODES)
OUTPUT = Path(__file__).resolve().parents[1] / "output"


@pytest.fixture(scope="module")
def shared(cluster, tmp_path_factory) -> Path:
    """The role converged for agents on any node: its claims on hostPath volumes both nodes mount."""
    base = tmp_path_factory.mktemp("shared-volumes")
    base.parent.chmod(0o755)
    volumes = k8s_node.make_local_volumes(base, NS)
    result = cluster.run_role(k8s_node.shared_role_vars(NS, volumes, f"{AGENT}:ok"))
    assert not result.failed, result.out[-3000:]
    return volumes


def _smoke(cluster, **args) -> dict:
    args.setdefault("env", {"NANOCLAW_FIXTURE_IPC_WAIT": "0"})
    return smoke_args(cluster, NS, **args)


def _on(node: str) -> dict:
    return {"kubernetes.io/hostname": node}


def test_both_nodes_are_ready_with_pod_ranges_of_their_own(cluster):
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    assert set(nodes) >= {NODE_A, NODE_B}
    addresses = set()
    for name in (NODE_A, NODE_B):
        status = nodes[name]["status"]
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True", name
        internal = [a["address"] for a in status["addresses"] if a["type"] == "InternalIP"]
        assert len(internal) == 1, status["addresses"]
        addresses.add(internal[0])
    assert addresses == {node.ip for node in k8s_node.NODES}


def _pod(name: str, node: str, command: list[str], restart: str) -> dict:
    """A pod of the fixture image on ``node`` (nodeName: no scheduler), restricted-compliant."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NET_NS},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": f"{AGENT}:ok",
                    "imagePullPolicy": "Never",
                    "command": command,
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def _wait_pod(cluster, name: str, phases: set[str], seconds: float = 90) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        pod = cluster.get("pod", name, "-n", NET_NS)
        if pod["status"].get("phase") in phases and pod["status"].get("podIP"):
            return pod
        assert time.monotonic() < deadline, f"pod {name} not {phases} after {seconds} s: {json.dumps(pod['status'])[-1500:]}"
        time.sleep(0.5)


def test_a_pod_on_one_node_reaches_a_pod_on_the_other(cluster):
    """Pod to pod across the two bridges by pod IP, as the CNI gives them (the host routes)."""
    cluster.kubectl("create", "namespace", NET_NS)
    try:
        server = _pod("server", NODE_A, ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/app/src"], "Always")
        cluster.kubectl("apply", "-f", "-", input_text=json.dumps(server))
        server_ip = _wait_pod(cluster, "server", {"Running"})["status"]["podIP"]
        assert server_ip.startswith(k8s_node.NODES[0].subnet.rsplit(".", 2)[0] + "."), server_ip
        fetch = (
            "import sys, time, urllib.request\n"
            "for attempt in range(40):\n"
            "    try:\n"
            f"        body = urllib.request.urlopen('http://{server_ip}:8080/index.ts', timeout=3).read()\n"
            "        print('fetched', len(body), 'bytes'); sys.exit(0)\n"
            "    except OSError as exc:\n"
            "        print('not yet:', exc); time.sleep(0.5)\n"
            "sys.exit(1)\n"
        )
        client = _pod("client", NODE_B, ["python3", "-c", fetch], "Never")
        cluster.kubectl("apply", "-f", "-", input_text=json.dumps(client))
        done = _wait_pod(cluster, "client", {"Succeeded", "Failed"})
        log = cluster.kubectl("logs", "client", "-n", NET_NS).stdout
        assert done["spec"]["nodeName"] == NODE_B
        assert done["status"]["podIP"].startswith(k8s_node.NODES[1].subnet.rsplit(".", 2)[0] + ".")
        assert done["status"]["phase"] == "Succeeded", log
        assert "fetched" in log, log
    finally:
        cluster.kubectl("delete", "namespace", NET_NS, "--wait=true", "--timeout=90s", check=False)


def test_a_session_on_the_other_node_reads_what_the_first_wrote(cluster, shared, tmp_path):
    """An agent Job on node A keeps memory in the group claim and answers over the IPC claim; the
    next session, forced onto node B, finds that memory and answers over the same IPC claim."""
    group = shared / NS / "nanoclaw-group-main"
    ipc = shared / NS / "nanoclaw-ipc-main"
    runs = []
    for node, prompt in ((NODE_A, "remember this on node A"), (NODE_B, "and this on node B")):
        play = run_module(
            tmp_path,
            "agent_smoke_job",
            [
                _smoke(
                    cluster,
                    node_selector=_on(node),
                    input={"prompt": prompt},
                    env={"NANOCLAW_FIXTURE_MEMORY": "1", "NANOCLAW_FIXTURE_IPC_WAIT": "60"},
                    ipc_path=str(ipc),
                    ipc_message=f"follow-up to {node}",
                )
            ],
        )
        result = play.results[0]
        assert not result.get("failed"), json.dumps(result, indent=1)[-3000:]
        assert result["node_name"] == node
        assert result["ipc"]["reply"]["text"] == f"fixture reply: follow-up to {node}"
        assert result["ipc"]["closed"] is True
        runs.append(result)
    assert runs[0]["output"]["fixtureReport"]["memory"] is None, "a fresh group claim"
    assert runs[1]["output"]["fixtureReport"]["memory"] == "remember this on node A\n"
    assert (group / "fixture-memory.txt").read_text() == "remember this on node A\nand this on node B\n"
    assert (group / "fixture-memory.txt").stat().st_uid == 1000


def test_five_concurrent_agents_spread_over_both_nodes(cluster, shared, tmp_path):
    calls = [_smoke(cluster, input={"prompt": f"spread {i}"}) for i in range(5)]
    play = run_module(tmp_path, "agent_smoke_job", calls, concurrent=True)
    assert len(play.results) == 5
    for index, result in enumerate(play.results):
        assert not result.get("failed"), json.dumps(result, indent=1)[-2000:]
        assert result["output"]["result"] == f"fixture echo: spread {index}"
        assert result["removed"] is True
    nodes = [r["node_name"] for r in play.results]
    intervals = [(r["started_at"], r["ended_at"]) for r in play.results]
    overlap = max(sum(1 for s, e in intervals if s <= start < e) for start, _e in intervals)
    spread = f"{nodes.count(NODE_A)} on {NODE_A}, {nodes.count(NODE_B)} on {NODE_B}"
    create_to_parsed = sorted(r["timings"]["create_to_parsed"] for r in play.results)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "k8s-two-nodes.txt").write_text(
        f"5 concurrent agent Jobs over two nodes: {spread}; at most {overlap} at once; "
        f"create_to_parsed p50 {statistics.median(create_to_parsed):.2f} s (all {create_to_parsed})\n"
    )
    assert set(nodes) == {NODE_A, NODE_B}, nodes
    assert overlap >= 2, intervals
