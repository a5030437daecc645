"""NetworkPolicies enforced on the test cluster: kube-router's policy controller, alone.

kube-router (built by k8s_build.build_kube_router) runs with only its firewall: no BGP router, no
service proxy. It watches pods, namespaces and NetworkPolicies and writes iptables chains and
ipsets in this host's network namespace, where the nodes' bridges are, so pod traffic (bridged
or routed between the bridges) passes its per-pod chains.

One instance per network namespace: its chains have fixed names and each sync replaces the whole
filter table, so a second instance would remove the first one's rules. It enforces for the pods
whose hostIP is its node's address, the first node (k8s_node.NODES[0]); the policy tests run
their pods there. It runs only while those tests do (its table rewrites would race any other
writer of iptables rules on the machine for longer), and stop() removes what it left: v2.1.0
keeps its rules on exit and its --cleanup-config cleans nothing of the firewall.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from . import services
from .common import HarnessError, log, require, run
from .k8s import SERVICE_CIDR
from .k8s_build import kube_router_bin
from .k8s_node import NODES

DAEMON = "k8s-kube-router"
CHAINS = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
IPSETS = ("KUBE-SRC-", "KUBE-DST-", "TMP-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-", "inet6:TMP-")


def start(kubeconfig: Path, log_path: Path) -> None:
    """Start the policy controller for the first node; ready once its top chain is in place."""
    require("ipset", "apt-get install -y ipset")
    require("iptables-restore", "apt-get install -y iptables")
    binary = kube_router_bin()
    if not binary.exists():
        raise HarnessError(f"{binary} was not built (k8s_build.build_kube_router, stage k8s:build)")
    node = NODES[0]
    services.start_daemon(
        DAEMON,
        [
            "env",
            f"NODE_NAME={node.name}",
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={node.name}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--health-port=0",
            "--metrics-port=0",
            "--iptables-sync-period=1m",
            "--v=1",
        ],
        ["iptables", "-S", "KUBE-ROUTER-FORWARD"],
        log_path,
        timeout=90,
    )


def enforced_for(pod_ip: str) -> bool:
    """Whether the controller has a firewall chain for ``pod_ip`` in place (it adds one per local
    pod on the pod's event, asynchronously)."""
    rules = run(["iptables-save", "-t", "filter"], capture=True, quiet=True).stdout
    return any(line.startswith("-A KUBE-POD-FW-") and f"{pod_ip}/32" in line for line in rules.splitlines())


def stop() -> None:
    """Stop the controller and remove its jumps, chains and ipsets (nothing else's)."""
    services.stop_daemon(DAEMON)
    if not shutil.which("iptables-save"):
        return
    rules = run(["iptables-save", "-t", "filter"], capture=True, quiet=True).stdout.splitlines()
    ours = [line.split()[0][1:] for line in rules if line.startswith(":") and line[1:].startswith(CHAINS)]
    removed = 0
    for line in rules:
        parts = shlex.split(line)
        if len(parts) > 2 and parts[0] == "-A" and parts[1] not in ours and "-j" in parts and parts[parts.index("-j") + 1] in ours:
            run(["iptables", "-D", *parts[1:]], check=False, capture=True, quiet=True)
            removed += 1
    for chain in ours:
        run(["iptables", "-F", chain], check=False, capture=True, quiet=True)
    for chain in ours:
        run(["iptables", "-X", chain], check=False, capture=True, quiet=True)
    sets = run(["ipset", "list", "-n"], check=False, capture=True, quiet=True).stdout.split() if shutil.which("ipset") else []
    for name in sets:
        if name.startswith(IPSETS):
            run(["ipset", "destroy", name], check=False, capture=True, quiet=True)
    if ours or removed:
        log(f"removed kube-router's {len(ours)} chains, {removed} jumps and its ipsets")
