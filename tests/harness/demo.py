"""The demo targets of ``./run site`` (and of ``./run test``'s site stages): REAL upstream NanoClaw.

Two disposable systemd containers of the Debian 13 target image, in this machine's network
namespace (so they reach the loopback registries under the address their certificate names):

* ``nanoclaw-demo``: rootless Podman behind the docker shim, NanoClaw v2 (upstream 2.0.64);
* ``nanoclaw-demo-docker``: Docker, NanoClaw v1 (upstream 1.2.53; ``./run test`` later moves it to
  v2 with playbooks/upgrade.yml). Its dockerd uses a bridge of the harness's own
  (``ncdemo0``) and no iptables rules, so this machine's docker0 and firewall stay untouched.

What a real host gets from elsewhere, the harness gives them, as an air-gapped or proxied site
would: the real upstream source (tests/harness/upstream.py: the bundle, or NANOCLAW_UPSTREAM) as a
bare repository at ``/srv/upstream/nanoclaw.git`` (``file://``), the Node.js tarball of the FIXTURE
mirror (tests/harness/fixture_repo.py: this machine's Node with its headers) and the CAs this
machine trusts (the package registries sit behind a TLS-intercepting proxy; the inventory installs
them with the ca_trust role). ``/dev/net/tun`` and ``/dev/fuse`` are opened as on a normal host.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from . import fixture_repo, fixtures, images, registry, services, upstream
from .common import REPO, HarnessError, log, run, sha256_of

PODMAN_TARGET = "nanoclaw-demo"
DOCKER_TARGET = "nanoclaw-demo-docker"
TARGETS = (PODMAN_TARGET, DOCKER_TARGET)
# Debian 13: its Podman 5 understands NanoClaw's --add-host=...:host-gateway, which Debian 12's
# Podman 4.3 rejects (runtime_compat's add_host_gateway check); its Node would do as well.
IMAGE = next(t for t in images.TARGETS if t.name.endswith(":debian13"))
FIXTURE_DIR = "/srv/nanoclaw-fixture"
UPSTREAM_DIR = "/srv/upstream"
# What the demo inventory reads (NANOCLAW_UPSTREAM_JSON names another path, e.g. in the EE).
UPSTREAM_JSON = REPO / ".cache" / "nanoclaw-upstream" / "upstream.json"

# The Docker target's daemon: a bridge of the harness's own, no iptables rules (a dockerd in this
# namespace with the default bridge would take docker0 from this machine's own dockerd).
DOCKER_BRIDGE = "ncdemo0"
DOCKER_BRIDGE_ADDRESS = "10.251.0.1/24"
DOCKER_DAEMON_OPTIONS = {"bridge": DOCKER_BRIDGE, "iptables": False}


def inside(container: str, *argv: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return run(["podman", "exec", "-i", container, *argv], capture=True, quiet=True, input_text=input_text)


@contextlib.contextmanager
def bridge(name: str = DOCKER_BRIDGE, address: str = DOCKER_BRIDGE_ADDRESS) -> Iterator[None]:
    """A bridge for a target dockerd in this namespace (up, with its gateway address); deleted after."""
    ensure_bridge(name, address)
    try:
        yield
    finally:
        remove_bridge(name)


def ensure_bridge(name: str = DOCKER_BRIDGE, address: str = DOCKER_BRIDGE_ADDRESS) -> None:
    if not Path(f"/sys/class/net/{name}").exists():
        run(["ip", "link", "add", name, "type", "bridge"], capture=True, quiet=True)
    addresses = run(["ip", "-4", "-o", "addr", "show", "dev", name], capture=True, quiet=True).stdout
    if f" {address.partition('/')[0]}/" not in addresses:
        run(["ip", "addr", "add", address, "dev", name], capture=True, quiet=True)
    run(["ip", "link", "set", name, "up"], capture=True, quiet=True)


def remove_bridge(name: str = DOCKER_BRIDGE) -> None:
    run(["ip", "link", "delete", name], check=False, capture=True, quiet=True)


def write_daemon_json(container: str, options: dict) -> None:
    """Before docker.io is installed: its package starts dockerd at once, which must come up on
    the harness's bridge without iptables rules (molecule/agent_image_common/prepare_docker.yml)."""
    inside(container, "mkdir", "-p", "/etc/docker")
    inside(container, "sh", "-c", "cat > /etc/docker/daemon.json", input_text=json.dumps(options) + "\n")


def prepare_target(meta: dict, container: str, source: upstream.Upstream | None = None) -> None:
    """Give a target what a real host gets from elsewhere: the Node.js tarball of the internal
    mirror stand-in, the real upstream repository (when ``source``), open tun/fuse devices."""
    inside(container, "chmod", "0666", "/dev/net/tun", "/dev/fuse")
    node = Path(meta["root"]) / "mirror" / meta["node"]["file"]
    archive = Path(meta["v1"]["archive"])
    stamp = f"{sha256_of(archive)} {meta['node']['sha256']} {source.bare if source else '-'}"
    seen = run(["podman", "exec", container, "cat", f"{FIXTURE_DIR}/.stamp"], check=False, capture=True, quiet=True)
    if seen.stdout.strip() == stamp:
        return
    inside(container, "mkdir", "-p", FIXTURE_DIR, UPSTREAM_DIR)
    for item in (archive, node):
        run(["podman", "cp", str(item), f"{container}:{FIXTURE_DIR}/{item.name}"], quiet=True)
    bare = f"{FIXTURE_DIR}/nanoclaw-v1.git"
    inside(container, "sh", "-c", f"rm -rf {bare} && tar -C {FIXTURE_DIR} -xzf {FIXTURE_DIR}/{archive.name} && chmod -R a+rX {bare}")
    safe = [bare]
    if source is not None and source.bare is not None:
        target = f"{UPSTREAM_DIR}/nanoclaw.git"
        inside(container, "rm", "-rf", target)
        run(["podman", "cp", str(source.bare), f"{container}:{target}"], quiet=True)
        inside(container, "chmod", "-R", "a+rX", target)
        safe.append(target)
    # The service user clones over file://: git refuses a repository another user owns.
    for path in safe:
        inside(
            container,
            "sh",
            "-c",
            f"git config --system --get-all safe.directory | grep -qx {path} || git config --system --add safe.directory {path}",
        )
    inside(container, "sh", "-c", f"echo '{stamp}' > {FIXTURE_DIR}/.stamp")


# Where the demo's prebuilt agent image lives in the push registry (pulled by digest).
AGENT_REPOSITORY = "demo/nanoclaw-agent-fixture"


def push_agent_image() -> str:
    """The prebuilt agent image the demo targets pull (upstream's Dockerfiles download from hosts
    this network cannot reach): the FIXTURE agent (tests/fixtures/agent, which answers both
    generations' contracts as upstream's runner does), pushed to the push registry. Returns
    ``<registry>/<repository>@<digest>``."""
    fixtures.ensure_fixture_images(["podman"], "podman (root, the demo's prebuilt agent image)", modes=("ok",))
    digest = registry.push_by_digest(f"{fixtures.AGENT}:ok", AGENT_REPOSITORY, "ok")
    return f"{registry.PUSH.address}/{AGENT_REPOSITORY}@{digest}"


def write_upstream_json(source: upstream.Upstream, agent_ref: str = "") -> Path:
    """The pins the demo inventory checks out and the agent image it pulls
    (group_vars/nanoclaw_hosts.yml reads this file)."""
    UPSTREAM_JSON.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "url": f"file://{UPSTREAM_DIR}/nanoclaw.git",
        "source": source.source,
        **source.pins,
        "versions": source.versions,
        "agent_ref": agent_ref,
    }
    tmp = UPSTREAM_JSON.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(UPSTREAM_JSON)
    return UPSTREAM_JSON


def ensure(targets: tuple[str, ...] = TARGETS) -> list[str]:
    """The demo targets running and given what they need (idempotent); returns those started now."""
    registry.ensure_registries()
    meta = fixture_repo.build()
    source = upstream.mirror()
    log(source.describe())
    write_upstream_json(source, push_agent_image())
    images.ensure_podman_image(IMAGE)
    started = []
    for name in targets:
        if name == DOCKER_TARGET:
            ensure_bridge()
        stores = ("/var/lib/docker",) if name == DOCKER_TARGET else ()
        if services.ensure_demo_target(name, IMAGE.name, engine_stores=stores):
            started.append(name)
            if name == DOCKER_TARGET:
                write_daemon_json(name, DOCKER_DAEMON_OPTIONS)
        prepare_target(meta, name, source)
    return started


def remove(targets: tuple[str, ...] = TARGETS) -> None:
    # A target (and its dockerd) goes before the bridge it uses.
    for name in targets:
        services.remove_container(name)
    if DOCKER_TARGET in targets:
        remove_bridge()


def container_ids(targets: tuple[str, ...] = TARGETS) -> dict[str, str]:
    """The container id of each demo target that exists now (none before Podman is installed)."""
    ids: dict[str, str] = {}
    if shutil.which("podman") is None:
        return ids
    for name in targets:
        proc = run(["podman", "container", "inspect", name, "--format", "{{.Id}}"], check=False, capture=True, quiet=True)
        if proc.returncode == 0:
            ids[name] = proc.stdout.strip()
    return ids


def remove_new(before: dict[str, str]) -> None:
    """Remove the demo targets created after ``before`` (``container_ids()`` then): those a run made."""
    made = tuple(name for name, cid in container_ids().items() if before.get(name) != cid)
    if made:
        remove(made)


def require_running(name: str) -> None:
    state = run(["podman", "inspect", name, "--format", "{{.State.Running}}"], check=False, capture=True, quiet=True)
    if state.stdout.strip() != "true":
        raise HarnessError(f"the demo target {name} is not running: run ./run site:first-run (or ./run site) first")
