"""Stage B: a real node for the test cluster - containerd + CNI bridge + kubelet on loopback.

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

Everything runs from STATE/k8s/node and RUN_DIR, fresh for every start, and is torn down by
stop(): pods deleted through the API (so the kubelet tears sandboxes and CNI down), kubelet
stopped, remaining containerd tasks killed, containerd stopped, mounts under our directories
unmounted, the bridge deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import fixtures, services
from .common import CHECKOUT_ID, STATE, HarnessError, log, require, run
from .k8s import Cluster, _client_cert, _free_port, kubeconfig
from .k8s_build import GO, K8S_VERSION

NODE_NAME = "nanoclaw-node"
# The claims the kubernetes role makes for the group "main" (local static PVs on this node).
CLAIMS = ["nanoclaw-group-main", "nanoclaw-ipc-main", "nanoclaw-sessions-main", "nanoclaw-project-ro"]
RUN_DIR = Path("/run/nanoclaw-k8s") / CHECKOUT_ID
SOCKET = RUN_DIR / "containerd.sock"
CNI_BIN = Path("/usr/lib/cni")
BRIDGE = "nck8s0"
POD_SUBNET = "10.244.0.0/24"
# The kubelet refuses a loopback node IP, and this kernel has no dummy links: the node's
# address is the bridge's gateway address, which the harness puts on the bridge before the
# CNI plugin (isGateway) finds it there. Local traffic only; nothing listens on eth0.
NODE_IP = "10.244.0.1"
PAUSE_IMAGE = "localhost/nanoclaw-pause:3.10"
DAEMONS = ("k8s-containerd", "k8s-kubelet")
# The fixture agent behaviours stage B uses (fixtures.MODES has them all).
AGENT_MODES = ("ok", "status-error", "hang")


def _ctr(*args: str, check: bool = True, input_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["ctr", "--address", str(SOCKET), "--namespace", "k8s.io", *args]
    if input_path is None:
        return run(argv, check=check, capture=True, quiet=True)
    with input_path.open("rb") as data:
        proc = subprocess.run(argv, stdin=data, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise HarnessError(f"ctr {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, proc.stdout.decode(errors="replace"), "")


def containerd_config(root: Path) -> str:
    return f"""version = 2
# nanoclaw.provision test node: a containerd of its own, apart from dockerd's.
root = "{root / "containerd"}"
state = "{RUN_DIR / "containerd-state"}"
[grpc]
  address = "{SOCKET}"
[ttrpc]
  address = "{RUN_DIR / "containerd.sock.ttrpc"}"
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
          Root = "{RUN_DIR / "runc"}"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_BIN}"
      conf_dir = "{root / "cni" / "net.d"}"
"""


def cni_config(root: Path) -> dict:
    return {
        "cniVersion": "0.4.0",
        "name": "nanoclaw-k8s",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # No masquerading: the agents of the tests talk to nothing outside the node,
                # and the host's NAT rules stay untouched.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "dataDir": str(root / "cni" / "ipam"),
                },
            }
        ],
    }


def kubelet_config(root: Path, pki: Path, port: int, healthz_port: int) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{SOCKET}",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(root / "pod-logs"),
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


def import_images(root: Path) -> list[str]:
    """docker save the pause and fixture images, ctr import them into containerd's k8s.io namespace."""
    fixtures.ensure_dockerd()
    fixtures.ensure_fixture_images(["docker"], "docker (root)")
    ensure_pause_image()
    names = [PAUSE_IMAGE, *(f"{fixtures.AGENT}:{mode}" for mode in AGENT_MODES)]
    archive = root / "images.tar"
    run(["docker", "save", "-o", str(archive), *names], capture=True, quiet=True)
    _ctr("images", "import", "-", input_path=archive)
    archive.unlink()
    listed = _ctr("images", "ls", "-q").stdout.split()
    missing = [n for n in names if n not in listed and f"docker.io/{n}" not in listed]
    if missing:
        raise HarnessError(f"images missing from containerd after the import: {missing} (listed: {listed})")
    return names


# ---------------------------------------------------------------- start / stop
def _node_certs(pki: Path) -> None:
    if not (pki / "node.crt").exists():
        _client_cert(pki, "node", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
    if not (pki / "kubelet-serving.crt").exists():
        _client_cert(pki, "kubelet-serving", f"/CN={NODE_NAME}", usage="serverAuth", san=f"IP:{NODE_IP},DNS:{NODE_NAME}")


def _bridge_with_node_ip() -> None:
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "add", BRIDGE, "type", "bridge"], capture=True, quiet=True)
    addresses = run(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture=True, quiet=True).stdout
    if f" {NODE_IP}/" not in addresses:
        run(["ip", "addr", "add", f"{NODE_IP}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE], capture=True, quiet=True)
    run(["ip", "link", "set", BRIDGE, "up"], capture=True, quiet=True)


def start(cluster: Cluster) -> float:
    """Start containerd and the kubelet, wait until the node is Ready; return seconds taken."""
    require("containerd", "apt-get install -y containerd")
    require("ctr", "apt-get install -y containerd")
    require("runc", "apt-get install -y runc")
    if not (CNI_BIN / "bridge").exists():
        raise HarnessError("missing host prerequisite CNI bridge plugin: install it with `apt-get install -y containernetworking-plugins`")
    kubelet = cluster.bin / "kubelet"
    if not kubelet.exists():
        raise HarnessError(f"{kubelet} was not built (k8s_build.COMMANDS)")
    started = time.monotonic()
    stop(cluster)
    root = STATE / "k8s" / "node"
    logs = cluster.root / "logs"
    pki = cluster.root / "pki"
    _node_certs(pki)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    for sub in ("cni/net.d", "cni/ipam", "pod-logs", "kubelet"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.chmod(0o711)
    _bridge_with_node_ip()
    (root / "containerd.toml").write_text(containerd_config(root))
    (root / "cni" / "net.d" / "10-nanoclaw-k8s.conflist").write_text(json.dumps(cni_config(root), indent=1))
    services.start_daemon(
        "k8s-containerd",
        ["containerd", "--config", str(root / "containerd.toml"), "--log-level", "warn"],
        ["ctr", "--address", str(SOCKET), "version"],
        logs / "containerd.log",
        timeout=60,
    )
    images_started = time.monotonic()
    import_images(root)
    log(f"images imported into the node's containerd in {time.monotonic() - images_started:.1f} s")
    node_cfg = kubeconfig(root / "kubelet.kubeconfig", cluster.server, pki / "ca.crt", "node", (pki / "node.crt", pki / "node.key"))
    port, healthz = _free_port(), _free_port()
    (root / "kubelet.yaml").write_text(json.dumps(kubelet_config(root, pki, port, healthz), indent=1))
    services.start_daemon(
        "k8s-kubelet",
        [
            str(kubelet),
            f"--config={root / 'kubelet.yaml'}",
            f"--kubeconfig={node_cfg}",
            f"--root-dir={root / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ],
        ["curl", "-sf", f"http://127.0.0.1:{healthz}/healthz"],
        logs / "kubelet.log",
        timeout=120,
    )
    deadline = time.monotonic() + 120
    while True:
        proc = cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if proc.returncode == 0:
            conditions = {c["type"]: c for c in json.loads(proc.stdout)["status"].get("conditions", [])}
            ready = conditions.get("Ready", {})
            if ready.get("status") == "True":
                break
        if time.monotonic() > deadline:
            detail = ready.get("message") if proc.returncode == 0 else proc.stderr.strip()
            raise HarnessError(f"node {NODE_NAME} not Ready after 120 s: {detail}; see {logs}/kubelet.log")
        time.sleep(1)
    seconds = time.monotonic() - started
    log(f"node {NODE_NAME} Ready in {seconds:.1f} s (containerd {SOCKET}, kubelet logs {logs / 'kubelet.log'})")
    return seconds


def _mounts_under(*bases: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if any(point == str(b) or point.startswith(f"{b}/") for b in bases):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def stop(cluster: Cluster | None = None) -> None:
    """Tear the node down; safe to call when nothing runs."""
    if cluster is not None and services.running("k8s-kubelet"):
        # Let the kubelet stop the pods itself (sandboxes, CNI DEL) while it still runs.
        cluster.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods = cluster.kubectl(
                "get", "pods", "-A", "--field-selector", f"spec.nodeName={NODE_NAME}", "-o", "name", check=False
            ).stdout.split()
            if not pods:
                break
            time.sleep(1)
    services.stop_daemon("k8s-kubelet")
    if services.running("k8s-containerd"):
        for task in _ctr("tasks", "ls", "-q", check=False).stdout.split():
            _ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(1)
        for task in _ctr("tasks", "ls", "-q", check=False).stdout.split():
            _ctr("tasks", "delete", "-f", task, check=False)
    services.stop_daemon("k8s-containerd")
    root = STATE / "k8s" / "node"
    for point in _mounts_under(root, RUN_DIR):
        run(["umount", "-l", point], check=False, capture=True, quiet=True)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "delete", BRIDGE], check=False, capture=True, quiet=True)
    os.environ.pop("NANOCLAW_K8S_NODE", None)


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
