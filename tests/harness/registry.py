"""Real OCI registries for the agent_image scenarios, on loopback.

Two instances of Debian's ``docker-registry`` (distribution v2):

* ``push``: 127.0.0.1:5443, TLS from a CA the harness generates, htpasswd (bcrypt)
  auth. The role pushes the agent image here. Its storage is emptied whenever
  the harness starts it, so every run proves real pushes.
* ``mirror``: 127.0.0.1:5444, TLS, anonymous: a pre-seeded mirror that holds a
  locally built FIXTURE stand-in for ``node:22-slim`` as ``library/node:22-slim``
  (Debian rootfs from the harness's cached tarball + this machine's Node
  runtime). An unqualified ``FROM node:22-slim`` builds only through it.

CA, certificates, htpasswd, password and the mirror's storage are cached in
``~/.cache/nanoclaw-provision/registry``. The daemons are started through
services.start_daemon (pidfile per checkout, stopped by the run that started
them). A registry of ours already answering on the port (started by another
checkout) is reused, never doubled.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import images, services
from .common import CACHE, STATE, HarnessError, log, require, run, sha256_of

ROOT = CACHE / "registry"
CA_CERT = ROOT / "ca.crt"
CA_KEY = ROOT / "ca.key"
SERVER_CERT = ROOT / "server.crt"
SERVER_KEY = ROOT / "server.key"
HTPASSWD = ROOT / "htpasswd"
PASSWORD_FILE = ROOT / "password"
USERNAME = "nanoclaw-ci"
HOST = "127.0.0.1"
DEFAULT_PUSH_PORT = 5443
PUSH_PORT = int(os.environ.get("NANOCLAW_REGISTRY_PORT", str(DEFAULT_PUSH_PORT)))
MIRROR_PORT = int(os.environ.get("NANOCLAW_MIRROR_PORT", "5444"))
# A push registry on another port is another daemon with its own storage and info file: `./run
# test` gives each agent_image scenario one of its own (their verify stops and restarts it), so
# they never stop the registry the demo targets pull from. The mirror is read-only: one for all.
PUSH_NAME = "push" if PUSH_PORT == DEFAULT_PUSH_PORT else f"push-{PUSH_PORT}"
# Per checkout: worktrees may run their own registries on other ports at the same time.
INFO_FILE = STATE / ("registry-info.json" if PUSH_NAME == "push" else f"registry-info-{PUSH_NAME}.json")

STANDIN_REPO = "library/node"
STANDIN_TAG = "22-slim"
STANDIN_IMAGE = "localhost/nanoclaw-fixture-node:22-slim"
STANDIN_RECIPE_VERSION = "3"
# Left out of the stand-in's rootfs: documentation, translations, git, Perl
# modules and Python (a node image has none of them), apt's caches. Smaller
# layers keep the targets' rootless vfs stores and the pushes fast. Python's
# packages are then purged from dpkg's database too (STANDIN_CONTAINERFILE), so
# that apt installs them afresh, as on the real node:22-slim.
STANDIN_EXCLUDES = [
    "./usr/share/doc",
    "./usr/share/man",
    "./usr/share/info",
    "./usr/share/locale",
    "./usr/lib/git-core",
    "./usr/share/git-core",
    "./usr/lib/python3",
    "./usr/lib/python3.11",
    "./usr/lib/x86_64-linux-gnu/perl",
    "./usr/share/perl",
    "./var/cache/apt",
    "./var/lib/apt/lists",
]
STANDIN_CONTAINERFILE = """\
# FIXTURE: a stand-in for Docker Hub's node:22-slim, built by the
# nanoclaw.provision test harness (tests/harness/registry.py) because no public
# registry is reachable from the test machines. Not a Node 22 image: it carries
# the test machine's Node runtime and npm (the real image has npm and npx too).
FROM {base}
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
# Python's files were left out of the rootfs: purge its packages from dpkg's database as well
# (their maintainer scripts would need Python), so apt installs them afresh as on the real image.
RUN rm -f /var/lib/dpkg/info/python3*.p*rm /var/lib/dpkg/info/libpython3*.p*rm /var/lib/dpkg/info/python-apt-common.p*rm \\
 && dpkg --purge --force-remove-essential --force-depends \\
      $(dpkg-query -W -f='${{Package}}\\n' 'python3*' 'libpython3*' python-apt-common 2>/dev/null) \\
 && dpkg --audit && ! command -v python3
RUN groupadd --gid 1000 node \\
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && ln -s /usr/local/bin/node /usr/local/bin/nodejs \\
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
LABEL org.opencontainers.image.title="node:22-slim FIXTURE stand-in" \\
      org.opencontainers.image.description="nanoclaw.provision test fixture, not the official node image" \\
      io.nanoclaw.provision.fixture="true" \\
      io.nanoclaw.provision.fixture.recipe="{recipe}"
CMD ["node"]
"""


@dataclass(frozen=True)
class Registry:
    name: str
    port: int
    auth: bool

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def storage(self) -> Path:
        # The push registry's content belongs to one run of one checkout; the
        # mirror's seeded content is reusable by every run.
        return ROOT / "mirror-storage" if self.name == "mirror" else STATE / f"registry-{self.name}-storage"

    @property
    def config(self) -> Path:
        return STATE / f"registry-{self.name}.yml"

    @property
    def daemon(self) -> str:
        return f"registry-{self.name}"


PUSH = Registry(PUSH_NAME, PUSH_PORT, auth=True)
MIRROR = Registry("mirror", MIRROR_PORT, auth=False)


# ---------------------------------------------------------------- TLS and auth
def _openssl(*args: str) -> None:
    run(["openssl", *args], capture=True, quiet=True)


def ensure_pki() -> None:
    """A CA and a server certificate for 127.0.0.1 and localhost, generated once."""
    require("openssl", "apt-get install -y openssl")
    ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT, 0o700)
    if not (CA_CERT.exists() and CA_KEY.exists()):
        log("generating the test registries' CA")
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            "/CN=nanoclaw.provision test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            str(CA_KEY),
            "-out",
            str(CA_CERT),
        )
        SERVER_CERT.unlink(missing_ok=True)
    if not (SERVER_CERT.exists() and SERVER_KEY.exists()):
        log("issuing the test registries' server certificate")
        with tempfile.TemporaryDirectory() as tmp:
            csr = Path(tmp) / "server.csr"
            ext = Path(tmp) / "ext.cnf"
            ext.write_text(
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
            )
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(SERVER_KEY), "-out", str(csr))
            _openssl(
                "x509",
                "-req",
                "-sha256",
                "-days",
                "825",
                "-in",
                str(csr),
                "-CA",
                str(CA_CERT),
                "-CAkey",
                str(CA_KEY),
                "-CAcreateserial",
                "-extfile",
                str(ext),
                "-out",
                str(SERVER_CERT),
            )
    for key in (CA_KEY, SERVER_KEY):
        os.chmod(key, 0o600)


def password() -> str:
    """The test user's password: random, generated once, kept 0600 outside git."""
    ROOT.mkdir(parents=True, exist_ok=True)
    if not PASSWORD_FILE.exists():
        fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(18))
        HTPASSWD.unlink(missing_ok=True)
    return PASSWORD_FILE.read_text().strip()


def ensure_htpasswd() -> None:
    require("htpasswd", "apt-get install -y apache2-utils")
    secret = password()
    if HTPASSWD.exists():
        # htpasswd -v checks the stored bcrypt hash; the password goes on stdin, never argv.
        probe = run(["htpasswd", "-v", "-i", str(HTPASSWD), USERNAME], check=False, capture=True, quiet=True, input_text=secret)
        if probe.returncode == 0:
            return
    run(["htpasswd", "-B", "-i", "-c", str(HTPASSWD), USERNAME], capture=True, quiet=True, input_text=secret)
    os.chmod(HTPASSWD, 0o600)


# ---------------------------------------------------------------- daemons
def _config_text(reg: Registry) -> str:
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}, "fields": {"service": reg.daemon}},
        "storage": {"filesystem": {"rootdirectory": str(reg.storage)}, "delete": {"enabled": True}},
        "http": {
            "addr": reg.address,
            "tls": {"certificate": str(SERVER_CERT), "key": str(SERVER_KEY)},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "health": {"storagedriver": {"enabled": False}},
    }
    if reg.auth:
        config["auth"] = {"htpasswd": {"realm": "nanoclaw-provision-test", "path": str(HTPASSWD)}}
    # JSON is YAML: no YAML library needed in the harness.
    return json.dumps(config, indent=2)


def ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CA_CERT))


def api(reg: Registry, path: str, *, method: str = "GET", accept: str | None = None, auth: bool = True, timeout: float = 10):
    """One request to a registry's v2 API; returns (status, headers, body)."""
    req = urllib.request.Request(reg.url + path, method=method)
    if accept:
        req.add_header("Accept", accept)
    if auth and reg.auth:
        token = base64.b64encode(f"{USERNAME}:{password()}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, context=ssl_context(), timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def answers(reg: Registry) -> bool:
    """True if a registry of ours (our CA, our auth mode) answers on the port."""
    try:
        status, headers, _body = api(reg, "/v2/", auth=False, timeout=3)
    except (OSError, ssl.SSLError):
        return False
    if "Docker-Distribution-Api-Version" not in headers and "docker-distribution-api-version" not in {k.lower() for k in headers}:
        return False
    return status == (401 if reg.auth else 200)


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def start(reg: Registry, fresh: bool = False) -> None:
    """Start ``reg`` unless a registry of ours answers on its port already."""
    binary = require("docker-registry", "apt-get install -y docker-registry")
    pidfile = services.PIDFILES / f"{reg.daemon}.pid"
    if answers(reg):
        owner = "this checkout" if pidfile.exists() else "another run"
        log(f"{reg.daemon} already answers on {reg.address} (started by {owner}); reusing it")
        return
    if _port_taken(reg.port):
        raise HarnessError(
            f"port {reg.port} on {HOST} is taken by something that is not a test registry of ours;"
            f" free it or set {'NANOCLAW_REGISTRY_PORT' if reg.auth else 'NANOCLAW_MIRROR_PORT'}"
        )
    if fresh and reg.storage.exists():
        shutil.rmtree(reg.storage)
    reg.storage.mkdir(parents=True, exist_ok=True)
    reg.config.parent.mkdir(parents=True, exist_ok=True)
    reg.config.write_text(_config_text(reg))
    ready = [
        sys.executable,
        "-c",
        "import ssl,sys,urllib.request,urllib.error\n"
        f"ctx=ssl.create_default_context(cafile={str(CA_CERT)!r})\n"
        "try:\n"
        f"    urllib.request.urlopen({reg.url + '/v2/'!r}, context=ctx, timeout=2)\n"
        "except urllib.error.HTTPError as e:\n"
        "    sys.exit(0 if e.code == 401 else 1)\n",
    ]
    services.start_daemon(reg.daemon, [binary, "serve", str(reg.config)], ready, STATE / "logs" / f"{reg.daemon}.log", timeout=30)


# ---------------------------------------------------------------- the node stand-in
def standin_recipe() -> str:
    tarball = images.rootfs_tarball(images.TARGETS[0])
    node = Path(shutil.which("node") or "/usr/bin/node")
    npm = _npm_dir()
    npm_version = json.loads((npm / "package.json").read_text())["version"] if npm else ""
    parts = [STANDIN_RECIPE_VERSION, tarball.name, json.dumps(STANDIN_EXCLUDES), STANDIN_CONTAINERFILE]
    parts += [str(node.stat().st_size), npm_version]
    return sha256_of(*parts)[:16]


def _npm_dir() -> Path | None:
    """This machine's npm package (``bin/npm-cli.js``'s package), which the stand-in carries."""
    npm = shutil.which("npm")
    if not npm:
        return None
    root = Path(npm).resolve().parents[1]
    return root if (root / "package.json").exists() else None


def standin_current() -> bool:
    """Whether the node:22-slim stand-in of the current recipe is built (the mirror is seeded from it)."""
    if not images.rootfs_tarball_cached(images.TARGETS[0]):
        return False
    label = run(
        ["podman", "image", "inspect", STANDIN_IMAGE, "--format", '{{ index .Labels "io.nanoclaw.provision.fixture.recipe" }}'],
        check=False,
        capture=True,
        quiet=True,
    )
    return label.returncode == 0 and label.stdout.strip() == standin_recipe()


def _mirror_recipe() -> str | None:
    """The fixture recipe of what the mirror holds as library/node:22-slim, or None."""
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    status, _headers, body = api(MIRROR, f"/v2/{STANDIN_REPO}/manifests/{STANDIN_TAG}", accept=accept)
    if status != 200:
        return None
    config_digest = json.loads(body)["config"]["digest"]
    status, _headers, body = api(MIRROR, f"/v2/{STANDIN_REPO}/blobs/{config_digest}")
    if status != 200:
        return None
    labels = (json.loads(body).get("config") or {}).get("Labels") or {}
    return labels.get("io.nanoclaw.provision.fixture.recipe")


def _build_standin(recipe: str) -> None:
    node = shutil.which("node")
    if not node:
        raise HarnessError(
            "missing host prerequisite 'node' (a Node runtime for the node:22-slim stand-in): install it with `apt-get install -y nodejs`"
        )
    tarball = images.rootfs_tarball(images.TARGETS[0])
    base = "localhost/nanoclaw-fixture-node-base:" + recipe
    with tempfile.TemporaryDirectory(prefix="nanoclaw-node-standin-", dir=ROOT) as tmp:
        ctx = Path(tmp)
        slim = ctx / "rootfs.tar"
        # GNU tar copies the cached rootfs without the excluded trees (same owners, modes, xattrs).
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=ROOT) as rootfs:
            excludes = [f"--exclude={e}" for e in STANDIN_EXCLUDES]
            run(["tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-xf", str(tarball), *excludes], quiet=True)
            run(["tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", str(slim), "."], quiet=True)
        run(["podman", "import", str(slim), base], capture=True)
        slim.unlink()
        npm = _npm_dir()
        if npm is None:
            raise HarnessError("missing host prerequisite 'npm' (for the node:22-slim stand-in): install it with `apt-get install -y npm`")
        shutil.copy2(node, ctx / "node")
        shutil.copytree(npm, ctx / "npm", symlinks=True)
        run(["strip", "--strip-debug", str(ctx / "node")], check=False, quiet=True)
        (ctx / "Containerfile").write_text(STANDIN_CONTAINERFILE.format(base=base, recipe=recipe))
        run(["podman", "build", "--network", "none", "-t", STANDIN_IMAGE, str(ctx)], capture=True)
    run(["podman", "rmi", base], check=False, capture=True, quiet=True)


def seed_mirror() -> None:
    """Push the node:22-slim stand-in to the mirror unless it holds this recipe already."""
    recipe = standin_recipe()
    if _mirror_recipe() == recipe:
        log(f"mirror holds {STANDIN_REPO}:{STANDIN_TAG} (fixture recipe {recipe})")
        return
    label = run(
        ["podman", "image", "inspect", STANDIN_IMAGE, "--format", '{{ index .Labels "io.nanoclaw.provision.fixture.recipe" }}'],
        check=False,
        capture=True,
        quiet=True,
    )
    if label.returncode != 0 or label.stdout.strip() != recipe:
        log(f"building the node:22-slim FIXTURE stand-in (recipe {recipe})")
        _build_standin(recipe)
    with tempfile.TemporaryDirectory() as certs:
        shutil.copy(CA_CERT, Path(certs) / "ca.crt")
        run(["podman", "push", "--cert-dir", certs, STANDIN_IMAGE, f"{MIRROR.address}/{STANDIN_REPO}:{STANDIN_TAG}"], capture=True)
    if _mirror_recipe() != recipe:
        raise HarnessError(f"the mirror at {MIRROR.address} does not show the pushed {STANDIN_REPO}:{STANDIN_TAG}")


# ---------------------------------------------------------------- images for pull-only mode
def push_by_digest(local: str, repository: str, tag: str, reg: Registry = PUSH) -> str:
    """Push the root store's ``local`` image to ``reg`` as ``repository:tag``; return its manifest digest.

    The reference ``<reg>/<repository>@<digest>`` is what the agent_image role's
    pull-only mode (nanoclaw_agent_image_pull_ref) takes. Docker v2 schema 2, which
    every engine of the targets reads.
    """
    with tempfile.TemporaryDirectory(prefix="nanoclaw-push-") as tmp:
        certs = Path(tmp) / "certs"
        certs.mkdir()
        shutil.copy(CA_CERT, certs / "ca.crt")
        auth = Path(tmp) / "auth.json"
        token = base64.b64encode(f"{USERNAME}:{password()}".encode()).decode()
        auth.write_text(json.dumps({"auths": {reg.address: {"auth": token}}}))
        auth.chmod(0o600)
        digestfile = Path(tmp) / "digest"
        argv = ["podman", "push", "--format", "v2s2", "--cert-dir", str(certs), "--digestfile", str(digestfile)]
        if reg.auth:
            argv += ["--authfile", str(auth)]
        run([*argv, local, f"{reg.address}/{repository}:{tag}"], capture=True)
        return digestfile.read_text().strip()


# ---------------------------------------------------------------- entry point
def write_info() -> Path:
    info = {
        "push": {"address": PUSH.address, "username": USERNAME, "password_file": str(PASSWORD_FILE)},
        "mirror": {"address": MIRROR.address, "base": f"{MIRROR.address}/{STANDIN_REPO}:{STANDIN_TAG}"},
        "ca_file": str(CA_CERT),
        "htpasswd": str(HTPASSWD),
        "server_cert": str(SERVER_CERT),
        "server_key": str(SERVER_KEY),
        "docker_registry": shutil.which("docker-registry") or "/usr/bin/docker-registry",
    }
    # This checkout's state directory may not exist yet when another checkout started the registries.
    INFO_FILE.parent.mkdir(parents=True, exist_ok=True)
    INFO_FILE.write_text(json.dumps(info, indent=2) + "\n")
    return INFO_FILE


def ensure_registries() -> Path:
    """Both registries up and the mirror seeded; returns the info file the scenarios read."""
    ensure_pki()
    ensure_htpasswd()
    start(MIRROR)
    seed_mirror()
    start(PUSH, fresh=True)
    info = write_info()
    os.environ["NANOCLAW_REGISTRY_INFO"] = str(info)
    return info
