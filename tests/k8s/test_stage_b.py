"""Stage B: agent Jobs really run on a node (containerd + CNI bridge + kubelet) - `./run k8s:b`.

The harness starts the control plane of stage A plus a node (tests/harness/k8s_node.py) with
the TEST FIXTURE agent images imported into its containerd. The kubernetes role lays down the
runtime with local static volumes on that node; agent_smoke_job then runs the fixture
from the role's Job template: the input goes to the agent's stdin through attach, the result is
parsed from the pod log, the IPC round trip goes through the claim's directory on the node.

The tests run in file order and share the cluster.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, smoke_args

from tests.harness import k8s_node
from tests.harness.common import parse_recap
from tests.harness.module_play import run_module

NS = "nc-stage-b"
NODE = "nanoclaw-node"
AGENT = "localhost/nanoclaw-fixture-agent"
ROLE_SECRET = "sk-role-5b1d0c7e-in-the-pod-env-only"
INPUT_SECRET = "sk-input-9e2f4a61-stdin-only"
CLAIMS = k8s_node.CLAIMS
OUTPUT = Path(__file__).resolve().parents[1] / "output"


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    """The local volumes' directories on the node (tests/harness/k8s_node.py make_local_volumes)."""
    base = tmp_path_factory.mktemp("volumes")
    base.parent.chmod(0o755)
    return k8s_node.make_local_volumes(base, NS)


def _role_vars(volumes: Path, **overrides) -> dict:
    return {
        **k8s_node.role_vars(NS, volumes, f"{AGENT}:ok"),
        "nanoclaw_kubernetes_secret_data": {"ANTHROPIC_API_KEY": ROLE_SECRET},
        **overrides,
    }


@pytest.fixture(scope="module")
def converged(cluster, volumes) -> Path:
    result = cluster.run_role(_role_vars(volumes))
    assert not result.failed, result.out[-3000:]
    return volumes


def _smoke(cluster, **args) -> dict:
    # A v1 agent waits for input/_close after its result (as the real runner does); without
    # ipc_path agent_smoke_job cannot write it, so the FIXTURE ends right after its result.
    args.setdefault("env", {"NANOCLAW_FIXTURE_IPC_WAIT": "0"})
    return smoke_args(cluster, NS, **args)


def _smoke_jobs_left(cluster) -> list[str]:
    return cluster.kubectl("get", "jobs,pods", "-n", NS, "-l", "nanoclaw.dev/smoke", "-o", "name").stdout.split()


def test_the_node_is_ready_on_containerd(cluster):
    node = cluster.get("node", NODE)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.6.")
    assert info["kubeletVersion"] == os.environ["NANOCLAW_K8S_VERSION"]


def test_check_mode_dry_runs_the_job_and_creates_nothing(cluster, converged, tmp_path):
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster)], check=True)
    result = play.results[0]
    assert not result.get("failed"), result
    assert "admitted" in result["msg"]
    assert _smoke_jobs_left(cluster) == []


def test_smoke_job_runs_the_fixture_and_reads_the_sentinel_from_the_pod_log(cluster, converged, tmp_path):
    prompt = "stage B smoke"
    play = run_module(
        tmp_path,
        "agent_smoke_job",
        [_smoke(cluster, input={"prompt": prompt, "isMain": True}, secrets={"ANTHROPIC_API_KEY": INPUT_SECRET})],
    )
    result = play.results[0]
    assert not result.get("failed"), json.dumps(result, indent=1)[-3000:]
    assert result["failure"] is None
    assert result["output"]["status"] == "success"
    assert result["output"]["result"] == f"fixture echo: {prompt}"
    report = result["output"]["fixtureReport"]
    # The template's securityContext and claims, as the pod really had them.
    assert report["uid"] == 1000
    assert set(report["mounts"]) >= {"/workspace/group", "/workspace/project", "/home/node/.claude", "/app/src"}
    assert report["projectWritable"] is False
    # The input (with its secret) went to stdin through attach: delivered, and nowhere else.
    assert report["secretKeys"] == ["ANTHROPIC_API_KEY"]
    assert report["secretExposure"] == {"argv": False, "environ": False}
    assert INPUT_SECRET not in play.log
    assert INPUT_SECRET not in json.dumps(result)
    assert result["exit_code"] == 0
    assert result["job_name"].startswith("nanoclaw-main-")
    timings = result["timings"]
    assert 0 < timings["create_to_running"] <= timings["create_to_parsed"] <= timings["total"]
    assert result["removed"] is True
    assert _smoke_jobs_left(cluster) == []


def test_the_controller_service_account_is_enough_for_a_session(cluster, converged, tmp_path):
    """What the role grants the host controller (jobs, pods, pods/log, pods/attach, its template) runs a session."""
    token = cluster.kubectl("create", "token", "nanoclaw-controller", "-n", NS, "--duration=1h").stdout.strip()
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "controller", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "controller"
    kubeconfig = tmp_path / "controller.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    kubeconfig.chmod(0o600)
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, kubeconfig=str(kubeconfig))])
    result = play.results[0]
    assert not result.get("failed"), json.dumps(result, indent=1)[-3000:]
    assert result["output"]["status"] == "success"
    assert result["removed"] is True
    assert token not in play.log


def test_five_concurrent_jobs_complete(cluster, converged, tmp_path):
    calls = [_smoke(cluster, input={"prompt": f"concurrent {i}"}) for i in range(5)]
    play = run_module(tmp_path, "agent_smoke_job", calls, concurrent=True)
    assert len(play.results) == 5
    for index, result in enumerate(play.results):
        assert not result.get("failed"), json.dumps(result, indent=1)[-2000:]
        assert result["output"]["result"] == f"fixture echo: concurrent {index}"
        assert result["removed"] is True
    assert len({r["job_name"] for r in play.results}) == 5
    # They really overlapped: how many Jobs existed at once, at the latest start.
    intervals = [(r["started_at"], r["ended_at"]) for r in play.results]
    starts = [s for s, _e in intervals]
    overlap = max(sum(1 for s, e in intervals if s <= start < e) for start in starts)
    print(f"5 concurrent Jobs: at most {overlap} at once; wall {max(e for _s, e in intervals) - min(starts):.1f} s")
    assert overlap >= 2, intervals
    assert _smoke_jobs_left(cluster) == []


def test_a_failing_agent_is_reported_clearly(cluster, converged, tmp_path):
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, image=f"{AGENT}:status-error")])
    result = play.results[0]
    assert result.get("failed") is True
    assert result["failure"] == "status_error"
    assert result["msg"] == "the agent answered status='error': fixture agent: simulated failure"
    assert result["agent_error"] == "fixture agent: simulated failure"
    assert result["exit_code"] == 1
    assert "fixture agent: simulated failure" in result["stdout_tail"]
    assert result["removed"] is True
    assert _smoke_jobs_left(cluster) == []


def test_a_hanging_agent_times_out_and_its_job_is_deleted(cluster, converged, tmp_path):
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, image=f"{AGENT}:hang", timeout=15)])
    result = play.results[0]
    assert result.get("failed") is True
    assert result["failure"] == "timeout"
    assert "did not finish within 15 s" in result["msg"]
    assert result["removed"] is True
    assert _smoke_jobs_left(cluster) == []


def test_a_missing_template_is_an_api_error(cluster, converged, tmp_path):
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, group="nosuchgroup")])
    result = play.results[0]
    assert result["failure"] == "api_error"
    assert "has no key job-nosuchgroup.yaml" in result["msg"]


def test_ipc_round_trip_across_the_claims(cluster, converged, tmp_path):
    ipc = converged / NS / "nanoclaw-ipc-main"
    message = "follow-up over the ipc claim"
    play = run_module(
        tmp_path,
        "agent_smoke_job",
        [_smoke(cluster, ipc_path=str(ipc), ipc_message=message, env={"NANOCLAW_FIXTURE_IPC_WAIT": "60"})],
    )
    result = play.results[0]
    assert not result.get("failed"), json.dumps(result, indent=1)[-3000:]
    trip = result["ipc"]
    assert trip["reply"]["text"] == f"fixture reply: {message}"
    assert trip["reply"]["inReplyTo"] == trip["sent"]
    assert trip["reply_outputs"] == [{"status": "success", "result": f"fixture reply: {message}", "newSessionId": "fixture-session-1"}]
    assert trip["closed"] is True
    assert trip["input_left"] == [], "the agent consumes its input and _close"
    # The session's own result is judged, not the follow-up's.
    assert result["output"]["result"].startswith("fixture echo: ")
    assert result["exit_code"] == 0
    assert sorted(p.name for p in ipc.iterdir()) == ["input", "messages", "tasks"]
    assert list((ipc / "messages").iterdir()) == [], "the host side consumed the reply"


def test_job_latency_over_ten_runs(cluster, converged, tmp_path):
    """Measured, not asserted: create -> running -> parsed, p50 over ten sequential Jobs."""
    play = run_module(tmp_path, "agent_smoke_job", [_smoke(cluster, input={"prompt": f"latency {i}"}) for i in range(10)])
    for result in play.results:
        assert not result.get("failed"), json.dumps(result, indent=1)[-2000:]
    keys = ("create_to_running", "running_to_parsed", "create_to_parsed", "total")
    samples = {k: [r["timings"][k] for r in play.results] for k in keys}
    lines = ["Job latency over 10 sequential runs of agent_smoke_job (seconds)"]
    for key in keys:
        values = sorted(samples[key])
        lines.append(f"  {key:<18} p50 {statistics.median(values):6.2f}  min {values[0]:6.2f}  max {values[-1]:6.2f}  all {values}")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "k8s-job-latency.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def test_an_arbitrary_uid_in_group_0_still_passes(cluster, converged, tmp_path):
    """The OpenShift rendering (no fixed ids) with the ids restricted-v2 would assign: a uid from
    the namespace's range, group 0, and an fsGroup from the range. The fsGroup matters: the
    kubelet re-owns a local volume's group to the pod's fsGroup (the earlier tests' 1000), so
    without one an arbitrary uid in group 0 could no longer read the claims."""
    result = cluster.run_role(_role_vars(converged, nanoclaw_kubernetes_openshift=True))
    assert not result.failed, result.out[-3000:]
    ipc = converged / NS / "nanoclaw-ipc-main"
    play = run_module(
        tmp_path,
        "agent_smoke_job",
        [
            _smoke(
                cluster,
                pod_security_context={"runAsUser": 1000650000, "runAsGroup": 0, "fsGroup": 1000650000},
                ipc_path=str(ipc),
                env={"NANOCLAW_FIXTURE_IPC_WAIT": "60"},
            )
        ],
    )
    smoke = play.results[0]
    assert not smoke.get("failed"), json.dumps(smoke, indent=1)[-3000:]
    assert smoke["output"]["fixtureReport"]["uid"] == 1000650000
    assert smoke["ipc"]["reply"]["text"].startswith("fixture reply: ")
    assert smoke["ipc"]["closed"] is True
    assert smoke["ipc"]["input_left"] == []
    assert ipc.stat().st_gid == 1000650000, "the kubelet applied the fsGroup to the local volume"


# ------------------------------------------------------------------ site.yml's cluster path (issue 18.3)
SITE_NS = "nc-site"
SITE_HOST = "cluster-b"
REPO = Path(__file__).resolve().parents[2]
# What a namespaced object of the runtime is, for "a --check run changes nothing".
SITE_KINDS = "pvc,configmap,secret,serviceaccount,role,rolebinding,resourcequota,limitrange,networkpolicy,deployment,service,job"


@pytest.fixture(scope="module")
def site_inventory(cluster, tmp_path_factory) -> Path:
    """An inventory with one controller in nanoclaw_clusters: the harness's cluster, its node's
    local volumes, the FIXTURE image imported there, and the smoke test as a Job."""
    base = tmp_path_factory.mktemp("site")
    base.chmod(0o755)
    volumes = k8s_node.make_local_volumes(base / "volumes", SITE_NS)
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        **k8s_node.role_vars(SITE_NS, volumes, f"{AGENT}:ok"),
        "nanoclaw_kubernetes_kubeconfig": str(cluster.kubeconfig),
        "nanoclaw_kubernetes_secret_data": {"ANTHROPIC_API_KEY": ROLE_SECRET},
        "nanoclaw_site_cluster_smoke": True,
        # The FIXTURE answers the v1 contract (no checkout on the controller: no generation to read);
        # kubeconfig, namespace and group come from the kubernetes role's variables.
        "nanoclaw_site_cluster_smoke_options": {"contract": "v1", "timeout": 120, "env": {"NANOCLAW_FIXTURE_IPC_WAIT": "0"}},
    }
    inventory = base / "hosts.yml"
    inventory.write_text(json.dumps({"nanoclaw_clusters": {"hosts": {SITE_HOST: host}}}))
    inventory.chmod(0o600)
    return inventory


def _playbook(inventory: Path, playbook: str, *extra: str) -> tuple[int, str, dict]:
    """ansible-playbook PLAYBOOK against the cluster inventory; its output is also kept in tests/output."""
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "playbooks" / playbook), *extra]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=900, cwd=REPO)
    out = proc.stdout + proc.stderr
    label = "-".join([playbook.replace(".yml", ""), *(e.lstrip("-").replace("=", "-") for e in extra if e != "-e")])
    (OUTPUT / f"k8s-site-{label}-{os.environ.get('PYTEST_CURRENT_TEST', '').split('::')[-1].split(' ')[0]}.log").write_text(out)
    return proc.returncode, out, parse_recap(out.splitlines()).get(SITE_HOST, {})


def _versions(cluster) -> dict[str, str]:
    items = cluster.get(SITE_KINDS, "-n", SITE_NS)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


def test_site_yml_provisions_the_cluster_and_runs_the_smoke_job(cluster, site_inventory):
    rc, out, recap = _playbook(site_inventory, "site.yml")
    assert rc == 0, out[-4000:]
    assert recap["failed"] == 0
    assert recap["changed"] > 0
    assert "runtime: kubernetes" in out
    assert "smoke:   agent answered " in out, out[-3000:]
    assert ROLE_SECRET not in out
    claims = cluster.get("pvc", "-n", SITE_NS)["items"]
    assert claims
    assert all(c["status"]["phase"] == "Bound" for c in claims)
    assert cluster.exists("configmap", "nanoclaw-agent-job-template", "-n", SITE_NS)
    assert cluster.get("jobs", "-n", SITE_NS, "-l", "nanoclaw.dev/smoke")["items"] == [], "the smoke Job is removed"


def test_site_yml_again_changes_nothing_and_check_mode_changes_nothing(cluster, site_inventory):
    rc, out, recap = _playbook(site_inventory, "site.yml")
    assert rc == 0, out[-4000:]
    assert recap["changed"] == 0, out[-4000:]
    before = _versions(cluster)
    rc, out, recap = _playbook(site_inventory, "site.yml", "--check")
    assert rc == 0, out[-4000:]
    assert recap["changed"] == 0, out[-4000:]
    assert "smoke:   check mode: the Job from the template is admitted in namespace nc-site" in out, out[-3000:]
    assert _versions(cluster) == before, "a --check run changed objects in the namespace"


def test_uninstall_keeps_the_claims_unless_purge(cluster, site_inventory):
    claims = {c["metadata"]["name"]: c["metadata"]["uid"] for c in cluster.get("pvc", "-n", SITE_NS)["items"]}
    rc, out, recap = _playbook(site_inventory, "uninstall.yml")
    assert rc == 0, out[-4000:]
    assert recap["changed"] > 0
    assert "kept the data claims" in out
    after = {c["metadata"]["name"]: c["metadata"]["uid"] for c in cluster.get("pvc", "-n", SITE_NS)["items"]}
    assert after == claims, "uninstall.yml without nanoclaw_purge must keep every claim"
    assert not cluster.exists("configmap", "nanoclaw-agent-job-template", "-n", SITE_NS)
    rc, out, recap = _playbook(site_inventory, "uninstall.yml", "-e", "nanoclaw_purge=true")
    assert rc == 0, out[-4000:]
    assert recap["changed"] > 0
    assert not cluster.exists("namespace", SITE_NS)
