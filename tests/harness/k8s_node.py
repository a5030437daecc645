"""Stage B: real nodes for the test cluster - containerd + CNI bridge + kubelet, two of them.

Two nodes (NODES) on this one machine, each with its own containerd, bridge, pod range, kubelet,
kubelet root and cgroup root, registered as two Node objects; pods of one reach pods of the other
through the host's routing between the two bridges. What the nodes have in common is this
machine's kernel and disk: a hostPath volume is the same directory on both, which stands in for
a ReadWriteMany network filesystem (this kernel has no NFS client and cannot load one).

- containerd: Debian's (1.6), started as a SEPARATE daemon of this run with its own config,
  root, state directory and socket (never /run/containerd, which dockerd's containerd uses), the
  CRI plugin with cgroupfs (runc SystemdCgroup=false; the host is cgroup v1 without systemd), the
  sandbox image built here, and the CNI bridge of Debian's containernetworking-plugins.
- images: no registry, so the pause (sandbox) image is compiled from build/pause/linux/pause.c
  of the k8s.io/kubernetes module (gcc -static) and packaged with `docker build FROM scratch`;
  it and the TEST FIXTURE agent images (tests/harness/fixtures.py) are exported with
  `docker save` and imported with `ctr -n k8s.io images import`.
- kubelet: built with the control plane (k8s_build.COMMANDS), a KubeletConfiguration with
  cgroupDriver cgroupfs, failCgroupV1 false, no static pods, webhook authentication and
  authorization, x509 clients of the cluster CA, serving on NODE_IP with a certificate of
  the cluster CA (the apiserver verifies it for logs and attach); it registers the node
  NODE_NAME with InternalIP NODE_IP (the CNI bridge's gateway address) and a client certificate of system:node:NODE_NAME.

Everything runs from STATE/k8s/nodes/NAME and RUN_DIR/LETTER, fresh for every start, and is torn
down by stop(): pods deleted through the API (so the kubelets tear sandboxes and CNI down),
kubelets stopped, remaining containerd tasks killed, containerds stopped, mounts under our
directories unmounted, the bridges, cgroup roots and forwarding rule removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import fixtures, services
from .common import CHECKOUT_ID, STATE, HarnessError, log, require, run
from .k8s import Cluster, client_cert, free_port, kubeconfig
from .k8s_build import GO, K8S_VERSION

# The claims the kubernetes role makes for the group "main" (local static PVs on the first node).
CLAIMS = ["nanoclaw-group-main", "nanoclaw-ipc-main", "nanoclaw-sessions-main", "nanoclaw-project-ro"]
RUN_DIR = Path("/run/nanoclaw-k8s") / CHECKOUT_ID
CNI_BIN = Path("/usr/lib/cni")
PODS_CIDR = "10.244.0.0/16"
PAUSE_IMAGE = "localhost/nanoclaw-pause:3.10"
# The fixture agent behaviours stage B uses (fixtures.MODES has them all).
AGENT_MODES = ("ok", "status-error", "hang")
# Pod traffic between the two bridges is routed by this host; a rule of ours lets it through
# FORWARD whatever the chain's policy (dockerd sets DROP when it enabled forwarding itself).
FORWARD_RULE = ["-s", PODS_CIDR, "-d", PODS_CIDR, "-m", "comment", "--comment", f"nanoclaw-k8s {CHECKOUT_ID}", "-j", "ACCEPT"]


@dataclass(frozen=True)
class Node:
    """One node: its own containerd (socket, root, state), CNI bridge and pod range, kubelet.

    The kubelet refuses a loopback node IP, and this kernel has no dummy links: a node's address
    is its bridge's gateway address, which the harness puts on the bridge before the CNI plugin
    (isGateway) finds it there. Local traffic only; nothing listens on eth0.
    """

    name: str
    letter: str
    index: int

    @property
    def bridge(self) -> str:
        return f"nck8s{self.index}"

    @property
    def subnet(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def ip(self) -> str:
        return f"10.244.{self.index}.1"

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / self.letter

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def root(self) -> Path:
        return STATE / "k8s" / "nodes" / self.name

    @property
    def daemons(self) -> tuple[str, str]:
        suffix = "" if self.index == 0 else f"-{self.letter}"
        return f"k8s-containerd{suffix}", f"k8s-kubelet{suffix}"

    @property
    def cgroup_root(self) -> str:
        """The first kubelet keeps the default (/kubepods); another one gets a cgroup root of its
        own, or each would remove the other's pod cgroups as orphans."""
        return "/" if self.index == 0 else f"/nanoclaw-k8s-{CHECKOUT_ID}-{self.letter}"


NODES = (Node("nanoclaw-node", "a", 0), Node("nanoclaw-node-b", "b", 1))
NODE_NAME = NODES[0].name
NODE_IP = NODES[0].ip


def _ctr(node: Node, *args: str, check: bool = True, input_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["ctr", "--address", str(node.socket), "--namespace", "k8s.io", *args]
    if input_path is None:
        return run(argv, check=check, capture=True, quiet=True)
    with input_path.open("rb") as data:
        proc = subprocess.run(argv, stdin=data, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise HarnessError(f"ctr {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, proc.stdout.decode(errors="replace"), "")


def containerd_config(node: Node) -> str:
    root = node.root
    return f"""version = 2
# nanoclaw.provision test node {node.name}: a containerd of its own, apart from dockerd's.
root = "{root / "containerd"}"
state = "{node.run_dir / "containerd-state"}"
[grpc]
  address = "{node.socket}"
[ttrpc]
  address = "{node.run_dir / "containerd.sock.ttrpc"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{root / "containerd-opt"}"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    # The machine withholds CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the sandbox
    # asks for -998), so clamp it to containerd's own value.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "/usr/sbin/runc"
          Root = "{node.run_dir / "runc"}"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_BIN}"
      conf_dir = "{root / "cni" / "net.d"}"
"""


def cni_config(node: Node) -> dict:
    return {
        "cniVersion": "0.4.0",
        "name": "nanoclaw-k8s",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                # No masquerading: the agents of the tests talk to nothing outside the nodes,
                # and the host's NAT rules stay untouched.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.subnet}]],
                    # The other node's pods are behind this node's gateway (the host routes
                    # between the bridges); nothing else is: no default route.
                    "routes": [{"dst": PODS_CIDR}],
                    "dataDir": str(node.root / "cni" / "ipam"),
                },
            }
        ],
    }


def kubelet_config(node: Node, pki: Path, port: int, healthz_port: int) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "address": node.ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki / f"kubelet-serving-{node.letter}.crt"),
        "tlsPrivateKeyFile": str(pki / f"kubelet-serving-{node.letter}.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(node.root / "pod-logs"),
        "resolvConf": "/etc/resolv.conf",
        "registerNode": True,
        "serializeImagePulls": False,
        # A shared developer disk: never evict or garbage-collect the test's images.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 30,
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "nodeStatusUpdateFrequency": "5s",
    }


# ---------------------------------------------------------------- images
def _pause_binary(work: Path) -> Path:
    """Compile Kubernetes' own pause.c (from the module cache) statically."""
    require("gcc", "apt-get install -y gcc libc6-dev")
    dl = run([GO, "mod", "download", "-json", f"k8s.io/kubernetes@{K8S_VERSION}"], capture=True, quiet=True, cwd=work)
    source = Path(json.loads(dl.stdout)["Dir"]) / "build" / "pause" / "linux" / "pause.c"
    if not source.exists():
        raise HarnessError(f"{source} is missing from the k8s.io/kubernetes module")
    binary = work / "pause"
    run(["gcc", "-Os", "-static", "-DVERSION=nanoclaw-test", "-o", str(binary), str(source)], capture=True, quiet=True)
    run(["strip", str(binary)], check=False, capture=True, quiet=True)
    return binary


def ensure_pause_image() -> None:
    """localhost/nanoclaw-pause in the harness's Docker (built once; labelled with the version)."""
    probe = run(
        ["docker", "image", "inspect", PAUSE_IMAGE, "--format", '{{ index .Config.Labels "nanoclaw.pause.k8s" }}'],
        check=False,
        capture=True,
        quiet=True,
    )
    if probe.returncode == 0 and probe.stdout.strip() == K8S_VERSION:
        return
    with tempfile.TemporaryDirectory(prefix="nanoclaw-pause-") as tmp:
        work = Path(tmp)
        _pause_binary(work)
        (work / "Containerfile").write_text(
            f'FROM scratch\nCOPY pause /pause\nLABEL nanoclaw.pause.k8s="{K8S_VERSION}"\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
        )
        run(["docker", "build", "-q", "-t", PAUSE_IMAGE, "-f", str(work / "Containerfile"), str(work)], capture=True)
    log(f"built the sandbox image {PAUSE_IMAGE} from pause.c of k8s.io/kubernetes {K8S_VERSION}")


def save_images() -> tuple[Path, list[str]]:
    """docker save the pause and fixture images into one archive, for every node's containerd."""
    fixtures.ensure_dockerd()
    fixtures.ensure_fixture_images(["docker"], "docker (root)")
    ensure_pause_image()
    names = [PAUSE_IMAGE, *(f"{fixtures.AGENT}:{mode}" for mode in AGENT_MODES)]
    archive = STATE / "k8s" / "nodes" / "images.tar"
    archive.parent.mkdir(parents=True, exist_ok=True)
    run(["docker", "save", "-o", str(archive), *names], capture=True, quiet=True)
    return archive, names


def import_images(node: Node, archive: Path, names: list[str]) -> None:
    """ctr import the saved images into the node's containerd (k8s.io namespace)."""
    _ctr(node, "images", "import", "-", input_path=archive)
    listed = _ctr(node, "images", "ls", "-q").stdout.split()
    missing = [n for n in names if n not in listed and f"docker.io/{n}" not in listed]
    if missing:
        raise HarnessError(f"images missing from {node.name}'s containerd after the import: {missing} (listed: {listed})")


# ---------------------------------------------------------------- start / stop
def _node_certs(pki: Path, node: Node) -> None:
    if not (pki / f"node-{node.letter}.crt").exists():
        client_cert(pki, f"node-{node.letter}", f"/O=system:nodes/CN=system:node:{node.name}")
    if not (pki / f"kubelet-serving-{node.letter}.crt").exists():
        client_cert(pki, f"kubelet-serving-{node.letter}", f"/CN={node.name}", usage="serverAuth", san=f"IP:{node.ip},DNS:{node.name}")


def _bridge_with_node_ip(node: Node) -> None:
    if not Path(f"/sys/class/net/{node.bridge}").exists():
        run(["ip", "link", "add", node.bridge, "type", "bridge"], capture=True, quiet=True)
    addresses = run(["ip", "-4", "-o", "addr", "show", "dev", node.bridge], capture=True, quiet=True).stdout
    if f" {node.ip}/" not in addresses:
        run(["ip", "addr", "add", f"{node.ip}/{node.subnet.split('/')[1]}", "dev", node.bridge], capture=True, quiet=True)
    run(["ip", "link", "set", node.bridge, "up"], capture=True, quiet=True)


def _cgroup_hierarchies() -> list[Path]:
    """This machine's cgroup v1 hierarchies (the kubelets use v1: the host is "hybrid")."""
    base = Path("/sys/fs/cgroup")
    return [p for p in sorted(base.iterdir()) if p.is_dir() and p.name != "unified" and (p / "cgroup.procs").exists()]


def _make_cgroup_root(node: Node) -> None:
    """The kubelet refuses a cgroup root that does not exist; make it in every hierarchy (cpuset
    with its parent's CPUs and memory nodes, which a new v1 cpuset does not inherit)."""
    if node.cgroup_root == "/":
        return
    for hierarchy in _cgroup_hierarchies():
        path = hierarchy / node.cgroup_root.lstrip("/")
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not (path / name).read_text().strip():
                    (path / name).write_text((hierarchy / name).read_text())


def _remove_cgroup_root(node: Node) -> None:
    """rmdir the node's cgroup tree bottom-up (empty once its pods and kubelet are gone)."""
    if node.cgroup_root == "/":
        return
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / node.cgroup_root.lstrip("/")
        if not top.is_dir():
            continue
        for current, _dirs, _files in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(OSError):
                os.rmdir(current)


def _forwarding(add: bool) -> None:
    """Let pod traffic between the nodes' bridges through FORWARD (appended, so a policy engine's
    jump inserted at the top still sees it first); routed by this host, so forwarding is on."""
    present = run(["iptables", "-C", "FORWARD", *FORWARD_RULE], check=False, capture=True, quiet=True).returncode == 0
    if add and not present:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        run(["iptables", "-A", "FORWARD", *FORWARD_RULE], capture=True, quiet=True)
    elif not add and present:
        run(["iptables", "-D", "FORWARD", *FORWARD_RULE], check=False, capture=True, quiet=True)


def _start_node(cluster: Cluster, node: Node, archive: Path, names: list[str]) -> None:
    """containerd with the images, then the kubelet of ``node`` (Ready is awaited by start())."""
    logs = cluster.root / "logs"
    pki = cluster.root / "pki"
    _node_certs(pki, node)
    root = node.root
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(node.run_dir, ignore_errors=True)
    for sub in ("cni/net.d", "cni/ipam", "pod-logs", "kubelet"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    node.run_dir.mkdir(parents=True, exist_ok=True)
    RUN_DIR.chmod(0o711)
    node.run_dir.chmod(0o711)
    _bridge_with_node_ip(node)
    _make_cgroup_root(node)
    containerd_daemon, kubelet_daemon = node.daemons
    (root / "containerd.toml").write_text(containerd_config(node))
    (root / "cni" / "net.d" / "10-nanoclaw-k8s.conflist").write_text(json.dumps(cni_config(node), indent=1))
    services.start_daemon(
        containerd_daemon,
        ["containerd", "--config", str(root / "containerd.toml"), "--log-level", "warn"],
        ["ctr", "--address", str(node.socket), "version"],
        logs / f"containerd-{node.letter}.log",
        timeout=60,
    )
    images_started = time.monotonic()
    import_images(node, archive, names)
    log(f"images imported into {node.name}'s containerd in {time.monotonic() - images_started:.1f} s")
    node_cfg = kubeconfig(
        root / "kubelet.kubeconfig",
        cluster.server,
        pki / "ca.crt",
        f"node-{node.letter}",
        (pki / f"node-{node.letter}.crt", pki / f"node-{node.letter}.key"),
    )
    port, healthz = free_port(), free_port()
    (root / "kubelet.yaml").write_text(json.dumps(kubelet_config(node, pki, port, healthz), indent=1))
    services.start_daemon(
        kubelet_daemon,
        [
            str(cluster.bin / "kubelet"),
            f"--config={root / 'kubelet.yaml'}",
            f"--kubeconfig={node_cfg}",
            f"--root-dir={root / 'kubelet'}",
            f"--hostname-override={node.name}",
            f"--node-ip={node.ip}",
            "--v=1",
        ],
        ["curl", "-sf", f"http://127.0.0.1:{healthz}/healthz"],
        logs / f"kubelet-{node.letter}.log",
        timeout=120,
    )


def _wait_ready(cluster: Cluster, node: Node, deadline: float) -> None:
    ready: dict = {}
    while True:
        proc = cluster.kubectl("get", "node", node.name, "-o", "json", check=False)
        if proc.returncode == 0:
            conditions = {c["type"]: c for c in json.loads(proc.stdout)["status"].get("conditions", [])}
            ready = conditions.get("Ready", {})
            if ready.get("status") == "True":
                return
        if time.monotonic() > deadline:
            detail = ready.get("message") if proc.returncode == 0 else proc.stderr.strip()
            raise HarnessError(f"node {node.name} not Ready after 120 s: {detail}; see {cluster.root / 'logs'}/kubelet-{node.letter}.log")
        time.sleep(1)


def start(cluster: Cluster, nodes: tuple[Node, ...] = NODES) -> float:
    """Start each node's containerd and kubelet, wait until every node is Ready; return seconds taken."""
    require("containerd", "apt-get install -y containerd")
    require("ctr", "apt-get install -y containerd")
    require("runc", "apt-get install -y runc")
    require("iptables", "apt-get install -y iptables")
    if not (CNI_BIN / "bridge").exists():
        raise HarnessError("missing host prerequisite CNI bridge plugin: install it with `apt-get install -y containernetworking-plugins`")
    kubelet = cluster.bin / "kubelet"
    if not kubelet.exists():
        raise HarnessError(f"{kubelet} was not built (k8s_build.COMMANDS)")
    started = time.monotonic()
    stop(cluster)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    archive, names = save_images()
    try:
        for node in nodes:
            _start_node(cluster, node, archive, names)
    finally:
        archive.unlink(missing_ok=True)
    _forwarding(add=True)
    deadline = time.monotonic() + 120
    for node in nodes:
        _wait_ready(cluster, node, deadline)
    seconds = time.monotonic() - started
    log(f"nodes {', '.join(n.name for n in nodes)} Ready in {seconds:.1f} s (sockets under {RUN_DIR}, logs in {cluster.root / 'logs'})")
    return seconds


def _mounts_under(*bases: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if any(point == str(b) or point.startswith(f"{b}/") for b in bases):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def stop(cluster: Cluster | None = None) -> None:
    """Tear every node down; safe to call when nothing runs."""
    kubelets = [node.daemons[1] for node in NODES]
    if cluster is not None and any(services.running(name) for name in kubelets):
        # Let the kubelets stop the pods themselves (sandboxes, CNI DEL) while they still run.
        cluster.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods = [
                name
                for node in NODES
                for name in cluster.kubectl(
                    "get", "pods", "-A", "--field-selector", f"spec.nodeName={node.name}", "-o", "name", check=False
                ).stdout.split()
            ]
            if not pods:
                break
            time.sleep(1)
    for node in reversed(NODES):
        containerd_daemon, kubelet_daemon = node.daemons
        services.stop_daemon(kubelet_daemon)
        if services.running(containerd_daemon):
            for task in _ctr(node, "tasks", "ls", "-q", check=False).stdout.split():
                _ctr(node, "tasks", "kill", "-s", "SIGKILL", task, check=False)
            time.sleep(1)
            for task in _ctr(node, "tasks", "ls", "-q", check=False).stdout.split():
                _ctr(node, "tasks", "delete", "-f", task, check=False)
        services.stop_daemon(containerd_daemon)
        for point in _mounts_under(node.root, node.run_dir):
            run(["umount", "-l", point], check=False, capture=True, quiet=True)
        if Path(f"/sys/class/net/{node.bridge}").exists():
            run(["ip", "link", "delete", node.bridge], check=False, capture=True, quiet=True)
        _remove_cgroup_root(node)
    if shutil.which("iptables"):
        _forwarding(add=False)


def make_local_volumes(base: Path, namespace: str) -> Path:
    """The local volumes' directories on this node, made by the host side as a single-node setup does:
    owned by the agent's uid (1000) and group 0, group-writable with setgid, so that both the
    template's fixed uid and an OpenShift-style arbitrary uid in group 0 can write."""
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    for claim in CLAIMS:
        path = base / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 1000, 0)
        path.chmod(0o2775)
    (base / namespace).chmod(0o755)
    return base


def role_vars(namespace: str, volumes: Path, image: str) -> dict:
    """The kubernetes role's variables for this node: local static PVs under ``volumes``, ``image``
    never pulled (imported into the node's containerd), requests small enough for 5 agents at once."""
    return {
        "nanoclaw_kubernetes_namespace": namespace,
        "nanoclaw_kubernetes_groups": ["main"],
        "nanoclaw_kubernetes_access_mode": "ReadWriteOnce",
        "nanoclaw_kubernetes_project_access_mode": "ReadOnlyMany",
        "nanoclaw_kubernetes_static_pvs": True,
        "nanoclaw_kubernetes_static_pv_type": "local",
        "nanoclaw_kubernetes_static_pv_path": str(volumes),
        "nanoclaw_kubernetes_node_name": NODE_NAME,
        "nanoclaw_kubernetes_wait_for_bound": True,
        "nanoclaw_kubernetes_agent_image": image,
        "nanoclaw_kubernetes_image_pull_policy": "Never",
        # Five agents must fit the 2-CPU node at once.
        "nanoclaw_kubernetes_agent_cpu": "1",
        "nanoclaw_kubernetes_agent_memory": "512Mi",
        "nanoclaw_kubernetes_agent_cpu_request": "100m",
        "nanoclaw_kubernetes_agent_memory_request": "128Mi",
    }


def shared_role_vars(namespace: str, volumes: Path, image: str) -> dict:
    """The role's variables for agents on any node: ReadWriteMany claims on hostPath static PVs
    under ``volumes`` and no node pinned. On this machine both nodes see the same directory, as
    every node of a real cluster mounts the same NFS export; on a real cluster hostPath is NOT
    shared storage (use ``nfs`` or a ReadWriteMany class)."""
    return {
        **role_vars(namespace, volumes, image),
        "nanoclaw_kubernetes_access_mode": "ReadWriteMany",
        "nanoclaw_kubernetes_static_pv_type": "hostPath",
        "nanoclaw_kubernetes_node_name": "",
    }
