"""Helpers of the nanoclaw verify tests: run the role for real, read the target's state."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
FIXTURE = json.loads((HERE.parents[2] / ".cache" / "nanoclaw-fixture" / "fixture.json").read_text())
USER = "nanoclaw"
HOME = "/home/nanoclaw"
PROJECT = f"{HOME}/nanoclaw"
SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "nanoclaw_podman")
# nanoclaw_podman: rootless Podman behind the docker shim; nanoclaw_docker: Docker's daemon.
ENGINE = "docker" if "docker" in SCENARIO else "podman"


def generation(container: str) -> str:
    return "v1" if container.endswith("-debian12") else "v2"


def slug() -> str:
    # NanoClaw v2: first 8 hex of sha1 of the physical project root (no symlinks here).
    return hashlib.sha1(PROJECT.encode()).hexdigest()[:8]


def unit_name(gen: str) -> str:
    return "nanoclaw.service" if gen == "v1" else f"nanoclaw-v2-{slug()}.service"


def image_name(gen: str) -> str:
    return "nanoclaw-agent:latest" if gen == "v1" else f"nanoclaw-agent-v2-{slug()}:latest"


def container_of(host) -> str:
    return host.backend.name


@functools.cache
def targets() -> tuple[str, ...]:
    """The scenario's running targets (nanoclaw_podman: Debian 12 and 13; nanoclaw_docker: Debian 12),
    listed once: they stay up for the whole verify, whose tests ask for them many times."""
    out = subprocess.run(
        ["podman", "ps", "--filter", f"name=^{SCENARIO}-debian", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout
    return tuple(sorted(out.split()))


def logic_target() -> str:
    """The one target that proves the role's own logic (input validation, refusals, failed builds):
    nanoclaw_podman's v2 target. That logic runs before or beside the engine and does not depend on
    it, so running it on every target of every scenario would only repeat it."""
    names = targets()
    return next((n for n in names if generation(n) == "v2"), names[0])


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "role_logic: the role's engine-independent logic (bad input, refusals, failed builds); run by"
        " nanoclaw_podman on one target, deselected in nanoclaw_docker",
    )


def pytest_collection_modifyitems(config, items) -> None:
    """nanoclaw_docker deselects the role_logic tests: nanoclaw_podman proves them, and they do not
    touch the engine (issue 15: merge what repeats). They are reported as deselected, not skipped."""
    if ENGINE != "docker":
        return
    drop = [item for item in items if item.get_closest_marker("role_logic")]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]


def run_role(extra_vars: dict | None = None, check: bool = False, only: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run play_nanoclaw.yml on both molecule targets at once (or ``only`` one), -e ``extra_vars``."""
    names = [only] if only else targets()
    inventory = {
        "all": {
            "vars": {"ansible_connection": "podman", "ansible_python_interpreter": "/usr/bin/python3"},
            "children": {name.rsplit("-", 1)[1]: {"hosts": {name: {}}} for name in names},
        }
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="nanoclaw-inventory-", delete=False) as handle:
        json.dump(inventory, handle)
    inv = Path(handle.name)
    argv = [str(BIN / "ansible-playbook"), "-i", str(inv), str(HERE / "play_nanoclaw.yml")]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=2400)
    finally:
        inv.unlink(missing_ok=True)


def run_module(target: str, module: str, args: dict) -> dict:
    """Run one module ad hoc on ``target`` (a real ansible run) and return its result."""
    argv = [
        str(BIN / "ansible"),
        "all",
        "-i",
        f"{target},",
        "-c",
        "podman",  # pipelined under the harness (tests/harness/ansible_plugins)
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-m",
        module,
        "-a",
        json.dumps(args),
    ]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1")
    # From the checkout root, where ansible.cfg points at the collection.
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=600, cwd=HERE.parents[2])
    try:
        # The JSON document, then whatever other callbacks print (ansible.cfg enables profile_tasks).
        document, _end = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])
        return document["plays"][0]["tasks"][0]["hosts"][target]
    except (ValueError, KeyError, IndexError) as exc:
        detail = f"{proc.stdout[-2000:]} {proc.stderr[-2000:]}"
        raise AssertionError(f"no result from {module} on {target} (rc {proc.returncode}): {detail}") from exc


def as_user(host, command: str):
    """Run a shell command as the service user, with its systemd user manager reachable."""
    uid = host.user(USER).uid
    return host.run(f"runuser -u {USER} -- env XDG_RUNTIME_DIR=/run/user/{uid} HOME={HOME} sh -c {_quote(command)}")


def engine(host, args: str):
    """The service user's container engine CLI (``podman`` or ``docker``) with ``args``."""
    return as_user(host, f"{ENGINE} {args}")


def remove_containers(host, *names: str) -> None:
    as_user(host, f"{ENGINE} rm -f {'-t 0 ' if ENGINE == 'podman' else ''}{' '.join(names)} >/dev/null 2>&1 || true")


def ensure_standin_image(host, tag: str) -> None:
    """The stand-in agent image (busybox + the FIXTURE agent as CMD) under ``tag``, imported without a registry."""
    command = (
        f"{ENGINE} image inspect {tag} >/dev/null 2>&1 || "
        f'{ENGINE} import --change \'CMD ["/bin/sh", "/agent"]\' /opt/standin/busybox-rootfs.tar {tag} >/dev/null'
    )
    r = as_user(host, command)
    assert r.rc == 0, r.stderr


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def main_pid(host, gen: str) -> int:
    out = as_user(host, f"systemctl --user show -p MainPID --value {unit_name(gen)}")
    return int(out.stdout.strip() or 0)


def status(host) -> dict:
    return json.loads(host.file(f"{PROJECT}/logs/fixture-status.json").content_string)


def state(host, gen: str) -> dict:
    """What a failed run must leave unchanged."""
    files = [f"{PROJECT}/.env", f"{HOME}/.config/nanoclaw/mount-allowlist.json", f"{HOME}/.config/systemd/user/{unit_name(gen)}"]
    return {
        "files": {f: host.check_output(f"sha256sum {f} 2>/dev/null || echo missing") for f in files},
        "head": as_user(host, f"git -C {PROJECT} rev-parse HEAD").stdout.strip(),
        "dist": host.check_output(f"sha256sum {PROJECT}/dist/build-info.json"),
        "pid": main_pid(host, gen),
    }
