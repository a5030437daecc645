"""Stage A: the kubernetes role against a real control plane (etcd + apiserver + controller-manager + scheduler).

The tests run in file order and share the cluster: bad input first (nothing may be
created), then check mode on the empty cluster, the converge, idempotence, what the
objects do (Pod Security, RBAC, quota, claims binding), and removal.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
import yaml

NS = "nc-stage-a"
SECRET_VALUE = "sk-test-7f3c9a1e-never-in-logs"
GROUPS = ["main", "family-chat"]
CLAIMS = [f"nanoclaw-{kind}-{group}" for kind in ("group", "ipc", "sessions") for group in GROUPS] + ["nanoclaw-project-ro"]

BASE = {
    "nanoclaw_kubernetes_namespace": NS,
    "nanoclaw_kubernetes_groups": GROUPS,
    "nanoclaw_kubernetes_access_mode": "ReadWriteOnce",
    "nanoclaw_kubernetes_project_access_mode": "ReadOnlyMany",
    "nanoclaw_kubernetes_static_pvs": True,
    "nanoclaw_kubernetes_static_pv_type": "hostPath",
    "nanoclaw_kubernetes_wait_for_bound": True,
    "nanoclaw_kubernetes_workspace_size": "2Gi",
    "nanoclaw_kubernetes_egress_cidrs": ["192.0.2.0/24"],
    "nanoclaw_kubernetes_secret_data": {"ANTHROPIC_API_KEY": SECRET_VALUE},
    "nanoclaw_kubernetes_credential_proxy": True,
    "nanoclaw_kubernetes_credential_proxy_image": "localhost/nanoclaw-credential-proxy:test",
    "nanoclaw_kubernetes_controller": True,
    "nanoclaw_kubernetes_controller_image": "localhost/nanoclaw-controller:test",
    "nanoclaw_kubernetes_agent_image": "localhost/nanoclaw-agent:test",
}


@pytest.fixture(scope="module")
def render_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rendered")


def _vars(render_dir: Path, **overrides) -> dict:
    return {
        **BASE,
        "nanoclaw_kubernetes_static_pv_path": str(render_dir.parent / "volumes"),
        "nanoclaw_kubernetes_render_dir": str(render_dir),
        **overrides,
    }


def _assert_nothing_created(cluster, namespace: str = NS) -> None:
    assert not cluster.exists("namespace", namespace), f"namespace {namespace} was created by a failed run"
    pvs = cluster.get("pv", "-l", f"nanoclaw.dev/namespace={namespace}")["items"]
    assert pvs == [], "static volumes were created by a failed run"


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"nanoclaw_kubernetes_namespace": "Bad_Namespace"}, 'invalid namespace name "Bad_Namespace" (nanoclaw_kubernetes_namespace)'),
        ({"nanoclaw_kubernetes_groups": ["main", "family_chat"]}, 'invalid group name(s) ["family_chat"] in nanoclaw_kubernetes_groups'),
        ({"nanoclaw_kubernetes_workspace_size": "10 gigs"}, "malformed size 10 gigs (nanoclaw_kubernetes_workspace_size)"),
        ({"nanoclaw_kubernetes_agent_cpu": "two"}, "malformed CPU amount two (nanoclaw_kubernetes_agent_cpu)"),
        ({"nanoclaw_kubernetes_access_mode": "ReadWriteSometimes"}, "nanoclaw_kubernetes_access_mode"),
        ({"nanoclaw_kubernetes_egress_cidrs": ["10.0.0.0"]}, 'malformed CIDR "10.0.0.0" in nanoclaw_kubernetes_egress_cidrs'),
        ({"nanoclaw_kubernetes_egress_cidrs": ["999.1.1.1/99"]}, 'malformed CIDR "999.1.1.1/99" in nanoclaw_kubernetes_egress_cidrs'),
        (
            {"nanoclaw_kubernetes_egress_cidrs": ["0.0.0.0/0"], "nanoclaw_kubernetes_egress_except": []},
            "0.0.0.0/0 in nanoclaw_kubernetes_egress_cidrs includes the cloud metadata address 169.254.169.254",
        ),
        ({"nanoclaw_kubernetes_workspace_size": "0"}, "size 0 (nanoclaw_kubernetes_workspace_size)"),
        ({"nanoclaw_kubernetes_agent_cpu": "0m"}, "CPU amount 0 (nanoclaw_kubernetes_agent_cpu)"),
        ({"nanoclaw_kubernetes_namespace": "kube-system"}, "nanoclaw_kubernetes_namespace kube-system is a namespace of Kubernetes itself"),
        ({"nanoclaw_kubernetes_namespace": "default"}, "nanoclaw_kubernetes_namespace default is a namespace of Kubernetes itself"),
        (
            {"nanoclaw_kubernetes_existing_secret": "creds"},
            "set either nanoclaw_kubernetes_secret_data or nanoclaw_kubernetes_existing_secret",
        ),
        (
            {"nanoclaw_kubernetes_kubeconfig": "/nonexistent/kubeconfig"},
            "the kubeconfig /nonexistent/kubeconfig (nanoclaw_kubernetes_kubeconfig) does not exist",
        ),
    ],
    ids=[
        "namespace",
        "group",
        "size",
        "cpu",
        "access-mode",
        "cidr",
        "cidr-out-of-range",
        "metadata-egress",
        "size-zero",
        "cpu-zero",
        "kube-system",
        "default",
        "secret-both",
        "kubeconfig-missing",
    ],
)
def test_bad_input_fails_naming_the_variable_and_creates_nothing(cluster, render_dir, overrides, expected):
    result = cluster.run_role(_vars(render_dir, **overrides))
    assert result.failed
    assert expected in result.text, result.out[-2500:]
    _assert_nothing_created(cluster)
    assert not list(render_dir.iterdir()), "manifests were rendered by a failed run"


def test_unreachable_api_server_fails_clearly(cluster, render_dir, tmp_path):
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # discard port: nothing listens
    broken = tmp_path / "unreachable.kubeconfig"
    broken.write_text(json.dumps(config))
    result = cluster.run_role(_vars(render_dir, nanoclaw_kubernetes_kubeconfig=str(broken)))
    assert result.failed
    assert "cannot reach the Kubernetes API server with nanoclaw_kubernetes_kubeconfig=" in result.text
    assert str(broken) in result.text
    _assert_nothing_created(cluster)


def test_missing_existing_secret_fails_before_anything_is_applied(cluster, render_dir):
    overrides = {"nanoclaw_kubernetes_secret_data": {}, "nanoclaw_kubernetes_existing_secret": "absent-creds"}
    result = cluster.run_role(_vars(render_dir, **overrides))
    assert result.failed
    assert "the Secret absent-creds (nanoclaw_kubernetes_existing_secret) does not exist" in result.text
    _assert_nothing_created(cluster)


# ------------------------------------------------------------------ check mode, converge, idempotence
def test_check_mode_on_an_empty_cluster_changes_nothing(cluster, render_dir):
    result = cluster.run_role(_vars(render_dir), check=True, diff=True)
    assert not result.failed, result.out[-3000:]
    assert result.changed > 0, "check mode must report what it would create"
    assert f"namespace {NS} does not exist yet" in result.text
    assert SECRET_VALUE not in result.text
    _assert_nothing_created(cluster)


def test_converge_applies_everything(cluster, render_dir):
    result = cluster.run_role(_vars(render_dir), verbosity=3)
    assert not result.failed, result.out[-4000:]
    assert result.changed > 0
    # The credential is in no result, no argv and no diff, even at -vvv.
    assert SECRET_VALUE not in result.text
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in result.text


def test_second_run_changes_nothing(cluster, render_dir):
    result = cluster.run_role(_vars(render_dir))
    assert not result.failed, result.out[-3000:]
    assert result.changed == 0, result.out[-4000:]


def test_check_mode_after_converge_reports_a_change_without_making_it(cluster, render_dir):
    cidrs = ["192.0.2.0/24", "198.51.100.0/24"]
    result = cluster.run_role(_vars(render_dir, nanoclaw_kubernetes_egress_cidrs=cidrs), check=True, diff=True)
    assert not result.failed, result.out[-3000:]
    assert result.changed == 1, result.out[-4000:]
    assert "198.51.100.0/24" in result.out, "the diff must show the new CIDR"
    policy = cluster.get("networkpolicy", "nanoclaw-agent-egress", "-n", NS)
    assert "198.51.100.0/24" not in json.dumps(policy), "check mode changed the policy"


# ------------------------------------------------------------------ what was applied
def test_namespace_enforces_pod_security_restricted(cluster):
    labels = cluster.get("namespace", NS)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_every_claim_binds_its_own_static_volume(cluster):
    claims = {c["metadata"]["name"]: c for c in cluster.get("pvc", "-n", NS)["items"]}
    assert sorted(claims) == sorted(CLAIMS)
    for name, claim in claims.items():
        assert claim["status"]["phase"] == "Bound", name
        assert claim["spec"]["volumeName"] == f"{NS}-{name}"
    assert claims["nanoclaw-project-ro"]["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert claims["nanoclaw-group-main"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claims["nanoclaw-group-main"]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    pv = cluster.get("pv", f"{NS}-nanoclaw-ipc-main")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["hostPath"]["path"].endswith(f"/{NS}/nanoclaw-ipc-main")


def test_service_accounts_and_token_automount(cluster):
    agent = cluster.get("serviceaccount", "nanoclaw-agent", "-n", NS)
    controller = cluster.get("serviceaccount", "nanoclaw-controller", "-n", NS)
    assert agent["automountServiceAccountToken"] is False
    assert controller["automountServiceAccountToken"] is True


def _can_i(cluster, sa: str, verb: str, resource: str, namespace: str = NS) -> bool:
    # `can-i VERB pods/log` would ask about a pod NAMED log: subresources go in --subresource.
    kind, _slash, sub = resource.partition("/")
    args = [kind, f"--subresource={sub}"] if kind == "pods" and sub in ("log", "exec", "attach") else [resource]
    proc = cluster.kubectl("auth", "can-i", verb, *args, "-n", namespace, f"--as=system:serviceaccount:{NS}:{sa}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


CONTROLLER_ALLOWED = [
    ("create", "jobs.batch"), ("get", "jobs.batch"), ("list", "jobs.batch"), ("watch", "jobs.batch"), ("delete", "jobs.batch"),
    ("get", "pods"), ("list", "pods"), ("watch", "pods"), ("get", "pods/log"),
    ("get", "persistentvolumeclaims"), ("list", "persistentvolumeclaims"), ("create", "persistentvolumeclaims"),
    ("create", "pods/attach"), ("get", "pods/attach"), ("get", "configmaps/nanoclaw-agent-job-template"),
]  # fmt: skip
CONTROLLER_DENIED = [
    ("create", "pods"), ("delete", "pods"), ("create", "pods/exec"), ("patch", "jobs.batch"), ("update", "jobs.batch"),
    ("get", "secrets"), ("list", "secrets"), ("delete", "persistentvolumeclaims"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"), ("update", "configmaps"), ("create", "serviceaccounts/token"),
    ("get", "configmaps/kube-root-ca.crt"), ("list", "configmaps"),
]  # fmt: skip


@pytest.mark.parametrize(("verb", "resource"), CONTROLLER_ALLOWED, ids=[f"{v}-{r}" for v, r in CONTROLLER_ALLOWED])
def test_controller_may(cluster, verb, resource):
    assert _can_i(cluster, "nanoclaw-controller", verb, resource)


@pytest.mark.parametrize(("verb", "resource"), CONTROLLER_DENIED, ids=[f"{v}-{r}" for v, r in CONTROLLER_DENIED])
def test_controller_may_not(cluster, verb, resource):
    assert not _can_i(cluster, "nanoclaw-controller", verb, resource)


def test_controller_may_not_create_jobs_in_another_namespace(cluster):
    assert not _can_i(cluster, "nanoclaw-controller", "create", "jobs.batch", namespace="default")


@pytest.mark.parametrize(
    ("verb", "resource"),
    [("get", "pods"), ("create", "jobs.batch"), ("get", "secrets"), ("get", "configmaps"), ("list", "persistentvolumeclaims")],
)
def test_agent_may_do_nothing(cluster, verb, resource):
    assert not _can_i(cluster, "nanoclaw-agent", verb, resource)


def test_quota_and_limits_follow_the_per_agent_resources(cluster):
    quota = cluster.get("resourcequota", "nanoclaw-agents", "-n", NS)
    assert quota["spec"]["scopes"] == ["Terminating"]
    assert quota["spec"]["hard"] == {
        "pods": "5",
        "limits.cpu": "10",
        "limits.memory": "20Gi",
        "requests.cpu": "2500m",
        "requests.memory": "5Gi",
    }
    limits = cluster.get("limitrange", "nanoclaw-defaults", "-n", NS)["spec"]["limits"][0]
    assert limits["default"] == {"cpu": "2", "memory": "4Gi"}


def test_network_policies(cluster):
    policies = {p["metadata"]["name"]: p["spec"] for p in cluster.get("networkpolicy", "-n", NS)["items"]}
    deny = policies["nanoclaw-default-deny-ingress"]
    assert deny["podSelector"] == {}
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    egress = policies["nanoclaw-agent-egress"]
    assert egress["policyTypes"] == ["Egress"]
    rules = egress["egress"]
    assert {p["port"] for p in rules[0]["ports"]} == {53}
    assert rules[1]["to"] == [{"ipBlock": {"cidr": "192.0.2.0/24"}}]
    assert rules[2]["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "credential-proxy"}
    assert len(rules) == 3
    proxy_in = policies["nanoclaw-credential-proxy-ingress"]
    assert proxy_in["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "agent"}


def test_secret_holds_the_credentials(cluster):
    secret = cluster.get("secret", "nanoclaw-credentials", "-n", NS)
    assert base64.b64decode(secret["data"]["ANTHROPIC_API_KEY"]).decode() == SECRET_VALUE


def test_credential_proxy_and_controller_deployments(cluster):
    proxy = cluster.get("deployment", "nanoclaw-credential-proxy", "-n", NS)
    service = cluster.get("service", "nanoclaw-credential-proxy", "-n", NS)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 3001
    assert proxy["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "nanoclaw-credentials"}}]
    controller = cluster.get("deployment", "nanoclaw-controller", "-n", NS)
    pod = controller["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nanoclaw-controller"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["CONTAINER_RUNTIME"] == "kubernetes"
    assert env["K8S_NAMESPACE"] == NS
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert {"nanoclaw-ipc-main", "nanoclaw-sessions-family-chat"} <= claims


def _job_manifest(cluster, group: str) -> dict:
    data = cluster.get("configmap", "nanoclaw-agent-job-template", "-n", NS)["data"]
    return yaml.safe_load(data[f"job-{group}.yaml"])


def test_job_template_has_the_session_contract(cluster, render_dir):
    job = _job_manifest(cluster, "main")
    assert job["metadata"]["generateName"] == "nanoclaw-main-"
    spec = job["spec"]
    assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"], spec["backoffLimit"]) == (1800, 300, 0)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "nanoclaw-agent"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["fsGroup"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["image"] == "localhost/nanoclaw-agent:test"
    sc = container["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/tmp", "/home/node", "/workspace/group", "/workspace/ipc", "/home/node/.claude", "/workspace/project"} == set(mounts)
    assert mounts["/workspace/project"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
    assert volumes["home"] == {"name": "home", "emptyDir": {}}
    assert volumes["ipc"]["persistentVolumeClaim"]["claimName"] == "nanoclaw-ipc-main"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["nanoclaw.dev/cleanup"] == "agent-job"
    assert labels["app.kubernetes.io/component"] == "agent"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ANTHROPIC_BASE_URL"] == f"http://nanoclaw-credential-proxy.{NS}.svc:3001"
    assert "envFrom" not in container, "with the proxy, agents must not get the Secret"
    rendered = yaml.safe_load((render_dir / "job-family-chat.yaml").read_text())
    assert rendered == _job_manifest(cluster, "family-chat")


# ------------------------------------------------------------------ Pod Security Admission
def test_a_non_compliant_pod_is_rejected(cluster):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged-probe", "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(pod), check=False)
    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr
    assert '"restricted:latest"' in proc.stderr


def test_our_agent_job_is_admitted_on_server_side_dry_run(cluster):
    job = _job_manifest(cluster, "main")
    proc = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input_text=json.dumps(job), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    # The pod the Job controller would make is admitted too (PSA checks pods).
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "probe-", "namespace": NS},
        "spec": job["spec"]["template"]["spec"],
    }
    proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(pod), check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_openshift_variant_has_no_fixed_ids_and_is_admitted(cluster, render_dir):
    result = cluster.run_role(_vars(render_dir, nanoclaw_kubernetes_openshift=True))
    assert not result.failed, result.out[-3000:]
    try:
        job = _job_manifest(cluster, "main")
        pod_sc = job["spec"]["template"]["spec"]["securityContext"]
        assert pod_sc == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(job), check=False)
        assert proc.returncode == 0, proc.stderr
    finally:
        assert not cluster.run_role(_vars(render_dir)).failed


# ------------------------------------------------------------------ quota
def _agent_pod(cluster, index: int) -> dict:
    template = _job_manifest(cluster, "main")["spec"]
    spec = dict(template["template"]["spec"], activeDeadlineSeconds=1800)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"quota-probe-{index}", "namespace": NS, "labels": template["template"]["metadata"]["labels"]},
        "spec": spec,
    }


def test_the_sixth_concurrent_agent_is_rejected_by_the_quota(cluster):
    try:
        for index in range(1, 6):
            proc = cluster.kubectl("create", "-f", "-", input_text=json.dumps(_agent_pod(cluster, index)), check=False)
            assert proc.returncode == 0, f"agent pod {index} rejected: {proc.stderr}"
        proc = cluster.kubectl("create", "-f", "-", input_text=json.dumps(_agent_pod(cluster, 6)), check=False)
        assert proc.returncode != 0
        assert "exceeded quota: nanoclaw-agents" in proc.stderr, proc.stderr
        assert re.search(r"limited: \S*pods=5", proc.stderr), proc.stderr
    finally:
        cluster.kubectl("delete", "pod", "-n", NS, "-l", "nanoclaw.dev/cleanup=agent-job", "--wait=true", check=False)


# ------------------------------------------------------------------ removal
def test_absent_removes_the_runtime_but_keeps_the_claims(cluster, render_dir):
    before = {c["metadata"]["uid"] for c in cluster.get("pvc", "-n", NS)["items"]}
    result = cluster.run_role(_vars(render_dir, nanoclaw_kubernetes_state="absent"))
    assert not result.failed, result.out[-3000:]
    assert "kept the data claims" in result.text
    after = cluster.get("pvc", "-n", NS)["items"]
    assert {c["metadata"]["uid"] for c in after} == before, "state=absent must keep the data claims"
    assert all(c["status"]["phase"] == "Bound" for c in after)
    for kind, name in [
        ("deployment", "nanoclaw-controller"), ("deployment", "nanoclaw-credential-proxy"), ("configmap", "nanoclaw-agent-job-template"),
        ("role", "nanoclaw-controller"), ("serviceaccount", "nanoclaw-agent"), ("secret", "nanoclaw-credentials"),
        ("resourcequota", "nanoclaw-agents"), ("networkpolicy", "nanoclaw-agent-egress"),
    ]:  # fmt: skip
        assert not cluster.exists(kind, name, "-n", NS), f"{kind}/{name} survived state=absent"
    again = cluster.run_role(_vars(render_dir, nanoclaw_kubernetes_state="absent"))
    assert not again.failed, again.out[-3000:]
    assert again.changed == 0, again.out[-3000:]


def test_converge_again_reuses_the_kept_claims(cluster, render_dir):
    before = {c["metadata"]["uid"] for c in cluster.get("pvc", "-n", NS)["items"]}
    result = cluster.run_role(_vars(render_dir))
    assert not result.failed, result.out[-3000:]
    assert {c["metadata"]["uid"] for c in cluster.get("pvc", "-n", NS)["items"]} == before


def test_purge_deletes_claims_volumes_and_namespace(cluster, render_dir):
    result = cluster.run_role(_vars(render_dir, nanoclaw_kubernetes_state="absent", nanoclaw_kubernetes_purge_data=True))
    assert not result.failed, result.out[-3000:]
    assert not cluster.exists("namespace", NS)
    assert cluster.get("pv", "-l", f"nanoclaw.dev/namespace={NS}")["items"] == []


# ------------------------------------------------------------------ namespaces and Secrets of others (issue 16.4)
def test_a_namespace_somebody_else_made_is_refused_untouched(cluster, tmp_path):
    ns = "nc-foreign"
    cluster.kubectl("create", "namespace", ns)
    try:
        before = cluster.get("namespace", ns)["metadata"]
        result = cluster.run_role(_vars(tmp_path, nanoclaw_kubernetes_namespace=ns, nanoclaw_kubernetes_static_pvs=False))
        assert result.failed
        message = f"the namespace {ns} (nanoclaw_kubernetes_namespace) exists and was not created by this role"
        assert message in result.text, result.out[-3000:]
        after = cluster.get("namespace", ns)["metadata"]
        assert after.get("labels") == before.get("labels")
        assert cluster.get("networkpolicy", "-n", ns)["items"] == []
        purge = cluster.run_role(
            _vars(tmp_path, nanoclaw_kubernetes_namespace=ns, nanoclaw_kubernetes_state="absent", nanoclaw_kubernetes_purge_data=True)
        )
        assert purge.failed
        assert cluster.exists("namespace", ns), "purge deleted a namespace the role did not create"
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_a_handed_over_namespace_and_an_external_secret_survive_purge(cluster, tmp_path):
    """The example inventory's external Secret is named nanoclaw-credentials, as the role's own would be."""
    ns = "nc-handed"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, "app.kubernetes.io/managed-by=nanoclaw-provision")
    cluster.kubectl("create", "secret", "generic", "nanoclaw-credentials", "-n", ns, "--from-literal=ANTHROPIC_API_KEY=external")
    try:
        overrides = {
            "nanoclaw_kubernetes_namespace": ns,
            "nanoclaw_kubernetes_static_pvs": False,
            "nanoclaw_kubernetes_wait_for_bound": False,
            "nanoclaw_kubernetes_secret_data": {},
            "nanoclaw_kubernetes_existing_secret": "nanoclaw-credentials",
        }
        result = cluster.run_role(_vars(tmp_path, **overrides))
        assert not result.failed, result.out[-3000:]
        purge = cluster.run_role(_vars(tmp_path, **overrides, nanoclaw_kubernetes_state="absent", nanoclaw_kubernetes_purge_data=True))
        assert not purge.failed, purge.out[-3000:]
        assert f"kept the namespace {ns}: it was handed to the role, not created by it" in purge.text
        assert cluster.exists("namespace", ns)
        secret = cluster.get("secret", "nanoclaw-credentials", "-n", ns)
        assert base64.b64decode(secret["data"]["ANTHROPIC_API_KEY"]).decode() == "external"
        assert not cluster.exists("deployment", "nanoclaw-controller", "-n", ns)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_server_is_the_pinned_release(cluster):
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == os.environ["NANOCLAW_K8S_VERSION"]
