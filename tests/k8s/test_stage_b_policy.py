"""Stage B, NetworkPolicies enforced: the role's policies tried from inside pods - `./run k8s:b`.

kube-router's policy controller (tests/harness/k8s_policy.py) runs while these tests do and
enforces for the pods of the first node. The role is converged in a namespace of its own with a
credential proxy (the FIXTURE image answers on its port) and one egress CIDR: the /32 of a server
pod in another namespace. From an agent pod and from a control pod of a namespace without
policies, the same probes: an HTTP request to each server (reached = any answer within 3 s), a
datagram to a stand-in DNS pod (kube-system, k8s-app=kube-dns, UDP 53; reached = its echo). The
control pod reaches what the agent must not, so each refusal is the policy's doing.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.harness import k8s_node, k8s_policy

NS = "nc-policy"
OTHER_NS = "nc-policy-others"
AGENT = "localhost/nanoclaw-fixture-agent"
NODE_A, NODE_B = (node.name for node in k8s_node.NODES)
PROXY_PORT = 3001
OUTPUT = Path(__file__).resolve().parents[1] / "output"

SERVE = ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/app/src"]
# A stand-in for cluster DNS: echoes every datagram on UDP 53.
ECHO_53 = [
    "python3",
    "-c",
    "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 53))\n"
    "while True:\n    data, peer = s.recvfrom(512)\n    s.sendto(b'echo:' + data, peer)\n",
]
PROBE = """
import json, socket, sys
results = {}
for name, proto, host, port in json.loads(sys.argv[1]):
    try:
        if proto == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(3)
            s.sendto(b"probe", (host, port))
            results[name] = s.recvfrom(512)[0].startswith(b"echo:")
        else:
            s = socket.create_connection((host, port), timeout=3)
            s.settimeout(3)
            s.sendall(b"GET / HTTP/1.0\\r\\nHost: probe\\r\\n\\r\\n")
            results[name] = len(s.recv(64)) > 0
        s.close()
    except OSError:
        results[name] = False
print(json.dumps(results))
"""


def _pod(name: str, namespace: str, node: str, command: list[str], *, labels: dict | None = None, root: bool = False) -> dict:
    security = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    container_security: dict = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if root:
        security = {"runAsUser": 0}
        container_security = {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "nodeName": node,
            "securityContext": security,
            "containers": [
                {
                    "name": "main",
                    "image": f"{AGENT}:ok",
                    "imagePullPolicy": "Never",
                    "command": command,
                    "securityContext": container_security,
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                }
            ],
        },
    }


def _running_ip(cluster, name: str, namespace: str, seconds: float = 90) -> str:
    deadline = time.monotonic() + seconds
    while True:
        pod = cluster.get("pod", name, "-n", namespace)
        if pod["status"].get("phase") == "Running" and pod["status"].get("podIP"):
            return pod["status"]["podIP"]
        assert time.monotonic() < deadline, f"pod {namespace}/{name} not running after {seconds} s: {json.dumps(pod['status'])[-1500:]}"
        time.sleep(0.5)


def _apply(cluster, *objects: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


class _Forwarder:
    """The API server as a pod could meet it: a TCP relay on the first node's address to the
    harness's API server, which itself listens on 127.0.0.1 only."""

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server((listen_host, 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _peer = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def enforced(cluster, tmp_path_factory):
    """Targets, the role converged with its policies, the policy controller, an agent and a control pod."""
    cluster.kubectl("create", "namespace", OTHER_NS)
    forwarder = None
    try:
        _apply(
            cluster,
            _pod("allowed", OTHER_NS, NODE_B, SERVE),
            _pod("other", OTHER_NS, NODE_B, SERVE),
            _pod("control", OTHER_NS, NODE_A, SERVE),
            _pod("nanoclaw-test-dns", "kube-system", NODE_B, ECHO_53, labels={"k8s-app": "kube-dns"}, root=True),
        )
        ips = {name: _running_ip(cluster, name, OTHER_NS) for name in ("allowed", "other", "control")}
        ips["dns"] = _running_ip(cluster, "nanoclaw-test-dns", "kube-system")
        base = tmp_path_factory.mktemp("policy-volumes")
        base.parent.chmod(0o755)
        volumes = k8s_node.make_local_volumes(base, NS)
        role = {
            **k8s_node.role_vars(NS, volumes, f"{AGENT}:ok"),
            "nanoclaw_kubernetes_secret_data": {"ANTHROPIC_API_KEY": "sk-policy-test-not-a-key"},
            "nanoclaw_kubernetes_egress_cidrs": [f"{ips['allowed']}/32"],
            "nanoclaw_kubernetes_credential_proxy": True,
            "nanoclaw_kubernetes_credential_proxy_image": f"{AGENT}:ok",
            "nanoclaw_kubernetes_credential_proxy_port": PROXY_PORT,
        }
        converge = cluster.run_role(role)
        assert not converge.failed, converge.out[-3000:]
        proxy = cluster.get("pods", "-n", NS, "-l", "app.kubernetes.io/component=credential-proxy")["items"]
        assert len(proxy) == 1, [p["metadata"]["name"] for p in proxy]
        ips["proxy"] = _running_ip(cluster, proxy[0]["metadata"]["name"], NS)
        k8s_policy.start(cluster.kubeconfig, OUTPUT / "kube-router.log")
        _apply(cluster, _pod("agent", NS, NODE_A, SERVE, labels={"app.kubernetes.io/component": "agent"}))
        ips["agent"] = _running_ip(cluster, "agent", NS)
        deadline = time.monotonic() + 60
        while not all(k8s_policy.enforced_for(ips[name]) for name in ("agent", "proxy", "control")):
            assert time.monotonic() < deadline, "kube-router made no firewall chain for the first node's pods within 60 s"
            time.sleep(0.5)
        server = urlparse(json.loads(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"])
        forwarder = _Forwarder(k8s_node.NODES[0].ip, (server.hostname, server.port))
        targets = [
            ("credential proxy", "tcp", ips["proxy"], PROXY_PORT),
            ("DNS (kube-system, k8s-app=kube-dns)", "udp", ips["dns"], 53),
            ("egress CIDR", "tcp", ips["allowed"], 8080),
            ("another namespace", "tcp", ips["other"], 8080),
            ("API server", "tcp", k8s_node.NODES[0].ip, forwarder.port),
            ("agent (ingress)", "tcp", ips["agent"], 8080),
        ]
        yield targets
    finally:
        if forwarder:
            forwarder.close()
        k8s_policy.stop()
        cluster.kubectl("delete", "pod", "nanoclaw-test-dns", "-n", "kube-system", "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", OTHER_NS, "--wait=false", check=False)
        cluster.kubectl("delete", "pod", "agent", "-n", NS, "--wait=false", check=False)


def _probe(cluster, namespace: str, pod: str, targets: list) -> dict[str, bool]:
    """Each target tried from inside ``pod``: True when it answered."""
    proc = cluster.kubectl("exec", "-n", namespace, pod, "--", "python3", "-c", PROBE, json.dumps(list(targets)))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_agent_reaches_only_what_the_role_allows(cluster, enforced):
    agent = _probe(cluster, NS, "agent", [t for t in enforced if t[0] != "agent (ingress)"])
    control = _probe(cluster, OTHER_NS, "control", enforced)
    lines = ["NetworkPolicy probes (kube-router v2.1.0 firewall; True = answered within 3 s)"]
    for name, proto, host, port in enforced:
        lines.append(f"  {name:<38} {proto} {host}:{port:<6} agent {agent.get(name, '-')!s:<6} control {control[name]}")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "k8s-policy.txt").write_text("\n".join(lines) + "\n")
    report = "\n".join(lines)
    # What the role allows an agent: DNS, the egress CIDR, the credential proxy.
    assert agent["credential proxy"] is True, report
    assert agent["DNS (kube-system, k8s-app=kube-dns)"] is True, report
    assert agent["egress CIDR"] is True, report
    # And nothing else, which the control pod (a namespace without policies) does reach.
    assert control["another namespace"] is True, report
    assert agent["another namespace"] is False, report
    assert control["API server"] is True, report
    assert agent["API server"] is False, report
    # Ingress: nothing reaches a pod of the namespace, not even the proxy unless from an agent.
    assert control["agent (ingress)"] is False, report
    assert control["credential proxy"] is False, report
    assert control["DNS (kube-system, k8s-app=kube-dns)"] is True, report
    assert control["egress CIDR"] is True, report
