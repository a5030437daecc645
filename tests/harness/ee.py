"""The execution environment as AWX runs it (`./run ee`).

1. A base image with Python 3 and pip, built here FROM the Debian 12 target image
   (localhost/nanoclaw-target:debian12, debootstrap; no registry): localhost/nanoclaw-ee-base.
   NANOCLAW_EE_BASE_IMAGE names another, already present, base image instead.
2. The EE itself, built by ansible-builder v3 from execution-environment.yml with Podman, the
   collection tarball of this checkout next to it: localhost/nanoclaw-ee:<recipe> (and :latest).
   pip inside the build trusts the host's CA bundle (a TLS-inspecting proxy may sit in between):
   it is bind-mounted for the build only, never copied into an image.
3. The target: the demo target of `./run site` (nanoclaw-demo, Debian 13, this machine's network
   namespace, its FIXTURES in place), given an SSH server on 127.0.0.1:NANOCLAW_EE_SSH_PORT
   (default 22022) and a key the harness generates, reached over SSH from inside the EE, as AWX
   reaches its hosts.
4. ansible-runner with container process isolation (Podman), as AWX's job runs do: the checkout
   is the project, an inventory is written from NANOCLAW_EE_INVENTORY's (default inventories/demo)
   variables with this target as its host, the key goes in env/ssh_key (the runner loads it into
   ssh-agent inside the EE), and the whole playbooks/site.yml runs (NANOCLAW_EE_JOB_TAGS limits it,
   as a job template's job tags do). The EE's container shares the network namespace (to reach
   the target and the loopback registries) and gets the registry CA, password and fixture.json
   read-only at the paths the inventory's variables name.

Images are cached by recipe hash (labels / tags); a rerun with the same recipe builds nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import demo, fixture_repo, images
from .common import CACHE, REPO, STATE, HarnessError, log, require, run, sha256_of
from .setup_env import load_yaml, tool_env, venv_bin

EE_DEFINITION = REPO / "execution-environment.yml"
EE_META = [REPO / "meta" / "execution-environment.yml", *sorted((REPO / "meta").glob("ee-*.txt"))]
BASE_IMAGE = "localhost/nanoclaw-ee-base:latest"
EE_IMAGE = "localhost/nanoclaw-ee"
SSH_PORT = int(os.environ.get("NANOCLAW_EE_SSH_PORT", "22022"))
PLAYBOOK = "playbooks/site.yml"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Where this machine keeps the CAs it adds to its store (Debian's update-ca-certificates).
CA_DIR = Path("/usr/local/share/ca-certificates")
# Where ansible-builder installs collections in the EE (ansible-galaxy's system path).
EE_COLLECTIONS = "/usr/share/ansible/collections"
WORK = CACHE / "ee"
RECIPE_LABEL = "nanoclaw.recipe"

# Debian's pip and python3 (PEP 668 marker overridden, as ansible-builder does in its stages);
# apt lists are kept so ansible-builder's bindep step can install the system requirements.
BASE_CONTAINERFILE = """\
# nanoclaw.provision EE base (test harness): Debian 12 with Python 3 and pip, built locally.
FROM {parent}
ENV DEBIAN_FRONTEND=noninteractive PIP_BREAK_SYSTEM_PACKAGES=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt container=
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3-pip \\
 && apt-get clean
LABEL {label}={recipe} org.opencontainers.image.description="nanoclaw.provision EE base (test harness)"
CMD ["/bin/bash"]
"""


def _label(image: str) -> str | None:
    proc = run(
        ["podman", "image", "inspect", image, "--format", f'{{{{ index .Labels "{RECIPE_LABEL}" }}}}'],
        check=False,
        capture=True,
        quiet=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _image_id(image: str) -> str:
    proc = run(["podman", "image", "inspect", image, "--format", "{{.Id}}"], check=False, capture=True, quiet=True)
    if proc.returncode != 0:
        raise HarnessError(f"image {image} is not present in root's Podman store")
    return proc.stdout.strip()


def _build_derived(name: str, template: str, parent: str, build_dir: Path) -> bool:
    """``podman build`` ``template`` FROM ``parent`` unless ``name`` carries the same recipe. True if built."""
    recipe = sha256_of(template, _image_id(parent))[:16]
    if _label(name) == recipe:
        log(f"{name} is current (recipe {recipe})")
        return False
    build_dir.mkdir(parents=True, exist_ok=True)
    containerfile = build_dir / "Containerfile"
    containerfile.write_text(template.format(parent=parent, label=RECIPE_LABEL, recipe=recipe))
    run(["podman", "build", "--pull=never", "-t", name, "-f", str(containerfile), str(build_dir)])
    return True


def image_ids() -> tuple[str | None, ...]:
    """The ids of the EE base and the latest EE image (None when absent): a build changes them."""
    ids = []
    for image in (BASE_IMAGE, f"{EE_IMAGE}:latest"):
        proc = run(["podman", "image", "inspect", image, "--format", "{{.Id}}"], check=False, capture=True, quiet=True)
        ids.append(proc.stdout.strip() if proc.returncode == 0 else None)
    return tuple(ids)


def ensure_base() -> str:
    override = os.environ.get("NANOCLAW_EE_BASE_IMAGE")
    if override:
        _image_id(override)
        log(f"EE base image from NANOCLAW_EE_BASE_IMAGE: {override}")
        return override
    images.ensure_podman_image(images.TARGETS[0])
    _build_derived(BASE_IMAGE, BASE_CONTAINERFILE, images.TARGETS[0].name, WORK / "base")
    return BASE_IMAGE


def _collection_tarball(out: Path) -> Path:
    run(
        [str(venv_bin() / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out), str(REPO)],
        env=tool_env(),
        capture=True,
    )
    return next(out.glob("nanoclaw-provision-*.tar.gz"))


# What a job in the EE runs: the collection's plugins, roles, playbooks and metadata. Tests, docs and
# the harness travel in the tarball too but do not change a job, so they do not rebuild the EE.
JOB_CONTENT = ("plugins/", "roles/", "playbooks/", "meta/")


def _content_key(tarball: Path) -> str:
    """The sha256 of every job-relevant file (from FILES.json, which has no timestamps) and the manifest's collection info."""
    with tarfile.open(tarball) as tar:
        files_member, manifest_member = tar.extractfile("FILES.json"), tar.extractfile("MANIFEST.json")
        if files_member is None or manifest_member is None:
            raise HarnessError(f"{tarball} has no FILES.json or MANIFEST.json")
        files = json.loads(files_member.read())["files"]
        info = json.loads(manifest_member.read())["collection_info"]
    listed = sorted(f"{f['name']}:{f.get('chksum_sha256')}" for f in files if f["name"].startswith(JOB_CONTENT))
    return sha256_of(json.dumps(info, sort_keys=True), *listed)


def ensure_ee(base: str) -> str:
    """Build the EE with ansible-builder unless an image of the same recipe exists. Returns its name."""
    build = WORK / "build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    tarball = _collection_tarball(build)
    shutil.copy2(EE_DEFINITION, build / EE_DEFINITION.name)
    recipe = sha256_of(EE_DEFINITION, *EE_META, _content_key(tarball), _image_id(base))[:16]
    image = f"{EE_IMAGE}:{recipe}"
    if _label(image) == recipe:
        log(f"{image} is current (recipe {recipe})")
        return image
    if not (venv_bin() / "ansible-builder").exists():
        raise HarnessError("ansible-builder is missing from the project virtualenv: run ./run setup (tests/requirements.txt pins it)")
    run(
        [
            str(venv_bin() / "ansible-builder"),
            "build",
            "--container-runtime",
            "podman",
            "-f",
            str(build / EE_DEFINITION.name),
            "-c",
            str(build / "context"),
            "-t",
            image,
            "-t",
            f"{EE_IMAGE}:latest",
            "--build-arg",
            f"EE_BASE_IMAGE={base}",
            "--extra-build-cli-args",
            shlex.join(["--pull=never", "--label", f"{RECIPE_LABEL}={recipe}", "-v", f"{HOST_CA}:/etc/ssl/certs/ca-certificates.crt:ro"]),
            "-v",
            "2",
        ],
        env=tool_env(),
        cwd=build,
    )
    # Older recipes of the EE are dead weight (only images this harness tagged). The build's
    # intermediate layers stay: the next build after a collection change reuses the Python stages.
    listing = run(["podman", "images", EE_IMAGE, "--format", "{{.Repository}}:{{.Tag}}"], capture=True, quiet=True).stdout.split()
    for old in listing:
        if old not in (image, f"{EE_IMAGE}:latest"):
            run(["podman", "rmi", old], check=False, capture=True, quiet=True)
    if _label(image) != recipe:
        raise HarnessError(f"ansible-builder finished but {image} does not carry recipe {recipe}")
    return image


# ---------------------------------------------------------------- target and runner
def ssh_key() -> Path:
    key = WORK / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nanoclaw-ee-harness", "-f", str(key)])
    return key


def sshd_drop_in(port: int) -> str:
    return f"""# nanoclaw.provision test harness (tests/harness/ee.py): the EE reaches this target over SSH.
# The target shares the test machine's network namespace: loopback only, on a port of its own.
Port {port}
ListenAddress 127.0.0.1
PermitRootLogin prohibit-password
PasswordAuthentication no
"""


def ensure_sshd(target: str, key: Path, port: int = SSH_PORT) -> None:
    """An SSH server in the target on 127.0.0.1:``port`` that accepts the harness's key.

    The configuration is written before openssh-server is installed: the package starts sshd at
    once, and in the shared network namespace its default port 22 would be this machine's."""

    def inside(script: str, input_text: str | None = None) -> None:
        run(["podman", "exec", "-i", target, "sh", "-c", script], input_text=input_text, capture=True, quiet=True)

    inside("install -d -m 0755 /etc/ssh/sshd_config.d && cat > /etc/ssh/sshd_config.d/nanoclaw-ee.conf", sshd_drop_in(port))
    inside(
        "command -v sshd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -qq --no-install-recommends openssh-server >/dev/null; }"
    )
    inside(
        "install -d -m 0700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 0600 /root/.ssh/authorized_keys",
        key.with_suffix(".pub").read_text(),
    )
    inside("systemctl restart ssh.service")
    # The target shares this machine's network namespace: its sshd answers here on loopback.
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise HarnessError(f"sshd in {target} does not answer on 127.0.0.1:{port}")
        time.sleep(0.5)


def _source_inventory() -> Path:
    return Path(os.environ.get("NANOCLAW_EE_INVENTORY", REPO / "inventories" / "demo"))


def _inventory_vars(source: Path) -> dict:
    """Variables the source inventory gives its nanoclaw_hosts (group vars and its first host's vars), minus how to connect."""
    data = load_yaml(source / "hosts.yml") or {}
    group = data.get("nanoclaw_hosts") or data.get("all", {}).get("children", {}).get("nanoclaw_hosts") or {}
    merged = dict(group.get("vars") or {})
    first = next(iter((group.get("hosts") or {}).values()), None) or {}
    merged.update(first)
    for key in list(merged):
        if key in ("ansible_connection", "ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file"):
            del merged[key]
    return merged


def write_private_data_dir(pdd: Path, ee_image: str, target: str, key: Path) -> None:
    """The runner's input, laid out as AWX lays out a job: project, inventory, env (envvars, ssh_key)."""
    shutil.rmtree(pdd, ignore_errors=True)
    project = pdd / "project"
    project.mkdir(parents=True)
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture=True, cwd=REPO, quiet=True).stdout
    listing = "\n".join(f for f in files.split("\0") if f and (REPO / f).exists())
    run(["rsync", "-a", "--files-from=-", f"{REPO}/", f"{project}/"], input_text=listing, quiet=True)
    source = _source_inventory()
    inventory = pdd / "inventory"
    inventory.mkdir()
    if (source / "group_vars").is_dir():
        shutil.copytree(source / "group_vars", inventory / "group_vars")
    host = {
        **_inventory_vars(source),
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": SSH_PORT,
        "ansible_user": "root",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    (inventory / "hosts.yml").write_text(
        "---\n# Written by tests/harness/ee.py from "
        + str(source.relative_to(REPO) if source.is_relative_to(REPO) else source)
        + "\n"
        + json.dumps({"nanoclaw_hosts": {"hosts": {target: host}}}, indent=2, sort_keys=True)
        + "\n"
    )
    env = pdd / "env"
    env.mkdir()
    # As AWX does: collections from the EE (its own path first), no host key prompt, plain output.
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": f"/runner/requirements_collections:~/.ansible/collections:{EE_COLLECTIONS}",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        # Where the demo inventory's variables read the FIXTURE commits and the registries' CA and
        # password (bind-mounted read-only below, at the same paths as on this machine).
        "NANOCLAW_CACHE": str(CACHE),
        "NANOCLAW_FIXTURE_JSON": str(fixture_repo.META),
        "NANOCLAW_UPSTREAM_JSON": str(demo.UPSTREAM_JSON),
        **{k: os.environ[k] for k in ("NANOCLAW_MIRROR_PORT", "NANOCLAW_REGISTRY_PORT") if k in os.environ},
    }
    (env / "envvars").write_text(json.dumps(envvars, indent=2) + "\n")
    # A job template's "job tags", as AWX passes them (env/cmdline); by default every step runs.
    tags = os.environ.get("NANOCLAW_EE_JOB_TAGS", "")
    if tags:
        (env / "cmdline").write_text(f"--tags {tags}\n")
    shutil.copy2(key, env / "ssh_key")
    (env / "ssh_key").chmod(0o600)
    settings = {
        "process_isolation": True,
        "process_isolation_executable": "podman",
        "container_image": ee_image,
        # The EE's user is 1000 (ansible-builder's default); the runner, run here by root with
        # rootful Podman, hands the SSH key over through a root-owned 0600 FIFO in the bind-mounted
        # private data dir, which only root in the container can read. AWX's own runs avoid that
        # by running Podman rootless (the key's owner is root in the container) or by streaming
        # the job into the container (ansible-runner worker); here the job's user is root.
        # The network namespace of this machine: the target's sshd and the registries listen on its
        # loopback (AWX's EE pods reach theirs over the cluster network).
        "container_options": [
            "--pull=never",
            "--user=0",
            "--network=host",
            f"--volume={CACHE / 'registry'}:{CACHE / 'registry'}:ro",
            f"--volume={fixture_repo.ROOT}:{fixture_repo.ROOT}:ro",
            f"--volume={demo.UPSTREAM_JSON.parent}:{demo.UPSTREAM_JSON.parent}:ro",
            # The CAs the demo inventory gives its targets (nanoclaw_ca_certificates): the controller's.
            f"--volume={CA_DIR}:{CA_DIR}:ro",
        ],
    }
    (env / "settings").write_text(json.dumps(settings, indent=2) + "\n")


@dataclass
class RunnerResult:
    status: str
    rc: int
    stats: dict
    role_task_paths: list[str]
    command: list[str]
    artifacts: Path


def run_playbook(pdd: Path, ident: str) -> RunnerResult:
    """``ansible-runner run`` with container isolation; the result read from its artifacts."""
    proc = run(
        [str(venv_bin() / "ansible-runner"), "run", str(pdd), "-p", PLAYBOOK, "--ident", ident],
        env=tool_env(),
        check=False,
    )
    artifacts = pdd / "artifacts" / ident
    status = (artifacts / "status").read_text().strip() if (artifacts / "status").exists() else "missing"
    rc = int((artifacts / "rc").read_text().strip()) if (artifacts / "rc").exists() else proc.returncode
    stats: dict = {}
    paths: list[str] = []
    for event_file in sorted((artifacts / "job_events").glob("*.json")):
        event = json.loads(event_file.read_text())
        data = event.get("event_data", {})
        if event.get("event") == "playbook_on_stats":
            stats = {k: data.get(k) or {} for k in ("ok", "changed", "failures", "dark", "skipped", "processed")}
        # Tasks read from a role's files (a role's own name is also set on its implicit tasks, whose path is the playbook).
        if event.get("event") == "playbook_on_task_start" and "/roles/" in data.get("task_path", ""):
            paths.append(data["task_path"])
    command_file = artifacts / "command"
    command = json.loads(command_file.read_text()).get("command", []) if command_file.exists() else []
    return RunnerResult(status=status, rc=rc, stats=stats, role_task_paths=paths, command=command, artifacts=artifacts)


def target_fact(target: str) -> dict:
    """What site.yml's first step leaves on the target: preflight's local fact file."""
    proc = run(["podman", "exec", target, "cat", "/etc/ansible/facts.d/nanoclaw_preflight.fact"], check=False, capture=True, quiet=True)
    if proc.returncode != 0:
        raise HarnessError(f"{target} has no /etc/ansible/facts.d/nanoclaw_preflight.fact after the run")
    return json.loads(proc.stdout)


def check(result: RunnerResult, ee_image: str, target: str, expect_unchanged: bool) -> list[str]:
    """Every expectation of the EE run; returns what held, raises on the first that did not."""
    held = []

    def expect(condition: bool, what: str, detail: str = "") -> None:
        if not condition:
            raise HarnessError(f"EE run: {what} did not hold{': ' + detail if detail else ''} (artifacts in {result.artifacts})")
        held.append(what)

    expect(result.status == "successful" and result.rc == 0, "runner status successful, rc 0", f"status={result.status} rc={result.rc}")
    expect(
        "podman" in os.path.basename(result.command[0]) if result.command else False,
        "the job ran in a Podman container",
        str(result.command[:3]),
    )
    expect(ee_image in result.command, f"the job ran in {ee_image}", " ".join(result.command[-12:]))
    stats = result.stats
    expect(
        target in stats.get("processed", {}) and not stats.get("failures") and not stats.get("dark"),
        f"{target} reached over SSH, no failed or unreachable host",
        json.dumps(stats),
    )
    expect(
        bool(result.role_task_paths) and all(p.startswith(EE_COLLECTIONS + "/") for p in result.role_task_paths),
        "every role task came from the collection installed in the EE",
        ", ".join(sorted({p.split(":")[0] for p in result.role_task_paths})[:5]),
    )
    if expect_unchanged:
        expect(not stats.get("changed"), "the already converged target: changed=0 from inside the EE", json.dumps(stats.get("changed")))
    fact = target_fact(target)
    expect(
        fact.get("platform") == "container" and fact.get("distribution") == "Debian" and fact.get("systemd") in (True, "true", "True"),
        "preflight's findings recorded on the target",
        json.dumps(fact),
    )
    return held


def stage(target: str, expect_unchanged: bool = False) -> tuple[list[str], dict[str, float]]:
    """The whole EE test against ``target`` (running, with its FIXTURES); returns the checks that held and step timings."""
    require("ssh-keygen", "apt-get install -y openssh-client")
    timings: dict[str, float] = {}
    started = time.monotonic()
    base = ensure_base()
    timings["base image"] = time.monotonic() - started
    mark = time.monotonic()
    ee_image = ensure_ee(base)
    timings["EE image (ansible-builder)"] = time.monotonic() - mark
    mark = time.monotonic()
    key = ssh_key()
    ensure_sshd(target, key)
    timings["sshd in the target"] = time.monotonic() - mark
    pdd = STATE / "ee-runner"
    write_private_data_dir(pdd, ee_image, target, key)
    mark = time.monotonic()
    result = run_playbook(pdd, f"site-{int(time.time())}")
    timings["site.yml in the EE (ansible-runner)"] = time.monotonic() - mark
    held = check(result, ee_image, target, expect_unchanged)
    for what in held:
        log(f"EE check held: {what}")
    log("EE timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return held, timings
