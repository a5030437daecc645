"""A real single-node Kubernetes control plane on loopback, for the kubernetes role's tests.

Stage A: etcd (Debian's etcd-server) + kube-apiserver + kube-controller-manager +
kube-scheduler built from the k8s.io/kubernetes Go module (see k8s_build.py). Certificates
and kubeconfigs are made with openssl; every daemon listens on 127.0.0.1 on ports chosen
free at start, runs in the background through services.start_daemon and is stopped by the
run that started it. The etcd data is fresh for every start: tests begin on an empty cluster.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from . import services
from .common import STATE, HarnessError, log, require, run
from .k8s_build import K8S_VERSION, build

DAEMONS = ("k8s-etcd", "k8s-apiserver", "k8s-controller-manager", "k8s-scheduler")
SERVICE_CIDR = "10.96.0.0/24"
SERVICE_IP = "10.96.0.1"


@dataclass
class Cluster:
    root: Path
    bin: Path
    server: str
    admin_kubeconfig: Path
    seconds_to_ready: float

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None):
        return run(
            [str(self.bin / "kubectl"), f"--kubeconfig={self.admin_kubeconfig}", *args],
            check=check,
            capture=True,
            quiet=True,
            input_text=input_text,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    run(["openssl", *args], cwd=cwd, capture=True, quiet=True)


def client_cert(pki: Path, name: str, subject: str, usage: str = "clientAuth", san: str = "") -> None:
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    ext = pki / f"{name}.ext"
    ext.write_text(
        f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
        + (f"subjectAltName={san}\n" if san else "")
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "30", "-sha256", "-extfile", ext.name, "-out", f"{name}.crt", cwd=pki,
    )  # fmt: skip


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert, client certs for admin and the controllers, SA keys."""
    if (pki / "complete").exists():
        _kubelet_client_cert(pki)
        return
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=nanoclaw-test-ca", "-days", "30", "-out", "ca.crt", cwd=pki)
    _openssl("genrsa", "-out", "apiserver.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver", "-out", "apiserver.csr", cwd=pki)
    (pki / "apiserver.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:" + SERVICE_IP + ",DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
    )
    _openssl(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "30", "-sha256", "-extfile", "apiserver.ext", "-out", "apiserver.crt", cwd=pki,
    )  # fmt: skip
    client_cert(pki, "admin", "/O=system:masters/CN=nanoclaw-admin")
    client_cert(pki, "controller-manager", "/CN=system:kube-controller-manager")
    client_cert(pki, "scheduler", "/CN=system:kube-scheduler")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    _kubelet_client_cert(pki)
    (pki / "complete").write_text("ok\n")


def _kubelet_client_cert(pki: Path) -> None:
    """The apiserver's client certificate towards kubelets (pod logs, attach); added for stage B."""
    if not (pki / "apiserver-kubelet-client.crt").exists():
        client_cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")


def kubeconfig(path: Path, server: str, ca: Path, user: str, creds: tuple[Path, Path]) -> Path:
    """Write a kubeconfig with an embedded client certificate (JSON is valid YAML)."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    auth = {"client-certificate-data": b64(creds[0]), "client-key-data": b64(creds[1])}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "nanoclaw-test", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": auth}],
        "contexts": [{"name": "nanoclaw-test", "context": {"cluster": "nanoclaw-test", "user": user}}],
        "current-context": "nanoclaw-test",
    }
    path.write_text(json.dumps(doc, indent=1))
    path.chmod(0o600)
    return path


def start(root: Path | None = None) -> Cluster:
    """Build (or reuse) the binaries and start a fresh control plane; return how to reach it."""
    require("etcd", "apt-get install -y etcd-server")
    require("openssl", "apt-get install -y openssl")
    require("curl", "apt-get install -y curl")
    binaries = build()
    root = root or STATE / "k8s"
    pki = root / "pki"
    make_pki(pki)
    for daemon in DAEMONS:
        services.stop_daemon(daemon)
    data = root / "etcd-data"
    shutil.rmtree(data, ignore_errors=True)
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    etcd_client, etcd_peer = free_port(), free_port()
    services.start_daemon(
        "k8s-etcd",
        [
            "etcd", "--name", "nanoclaw-test", "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"nanoclaw-test=http://127.0.0.1:{etcd_peer}",
            "--quota-backend-bytes", str(1 << 30), "--log-level", "warn",
        ],
        ["curl", "-sf", f"http://127.0.0.1:{etcd_client}/health"],
        logs / "etcd.log",
    )  # fmt: skip

    api_port = free_port()
    server = f"https://127.0.0.1:{api_port}"
    admin = kubeconfig(root / "admin.kubeconfig", server, pki / "ca.crt", "admin", (pki / "admin.crt", pki / "admin.key"))
    kcm_cfg = kubeconfig(
        root / "controller-manager.kubeconfig",
        server,
        pki / "ca.crt",
        "kcm",
        (pki / "controller-manager.crt", pki / "controller-manager.key"),
    )
    sched_cfg = kubeconfig(root / "scheduler.kubeconfig", server, pki / "ca.crt", "sched", (pki / "scheduler.crt", pki / "scheduler.key"))
    curl_admin = ["curl", "-sf", "--cacert", str(pki / "ca.crt"), "--cert", str(pki / "admin.crt"), "--key", str(pki / "admin.key")]
    services.start_daemon(
        "k8s-apiserver",
        [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            # How the apiserver reaches a kubelet (stage B: pod logs, attach): its client
            # certificate, the CA that signed the kubelet's serving certificate, by InternalIP.
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--anonymous-auth=false",
            "--profiling=false",
            "--v=1",
        ],
        [*curl_admin, f"{server}/readyz"],
        logs / "apiserver.log",
        timeout=120,
    )  # fmt: skip
    kcm_port, sched_port = free_port(), free_port()
    services.start_daemon(
        "k8s-controller-manager",
        [
            str(binaries / "kube-controller-manager"),
            f"--kubeconfig={kcm_cfg}", f"--authentication-kubeconfig={kcm_cfg}", f"--authorization-kubeconfig={kcm_cfg}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*", "--profiling=false", "--v=1", f"--cert-dir={root / 'kcm-certs'}",
        ],
        ["curl", "-sfk", f"https://127.0.0.1:{kcm_port}/healthz"],
        logs / "controller-manager.log",
        timeout=90,
    )  # fmt: skip
    services.start_daemon(
        "k8s-scheduler",
        [
            str(binaries / "kube-scheduler"),
            f"--kubeconfig={sched_cfg}", f"--authentication-kubeconfig={sched_cfg}", f"--authorization-kubeconfig={sched_cfg}",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--leader-elect=false", "--profiling=false", "--v=1",
            f"--cert-dir={root / 'scheduler-certs'}",
        ],
        ["curl", "-sfk", f"https://127.0.0.1:{sched_port}/healthz"],
        logs / "scheduler.log",
        timeout=90,
    )  # fmt: skip
    cluster = Cluster(root=root, bin=binaries, server=server, admin_kubeconfig=admin, seconds_to_ready=0.0)
    # The service-account controller must have created "default" before pods can be made.
    deadline = time.monotonic() + 60
    while cluster.kubectl("-n", "default", "get", "serviceaccount", "default", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise HarnessError(f"the controller-manager did not create the default ServiceAccount; see {logs}")
        time.sleep(0.5)
    cluster.seconds_to_ready = time.monotonic() - started
    log(f"kubernetes {K8S_VERSION} control plane ready at {server} in {cluster.seconds_to_ready:.1f} s (logs: {logs})")
    return cluster


def stop() -> None:
    for daemon in reversed(DAEMONS):
        services.stop_daemon(daemon)
