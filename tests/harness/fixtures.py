"""Engines and TEST FIXTURE images for the module integration tests (`./run integration:modules`).

- rootful Docker: Debian's dockerd, started here when none answers (and stopped by the run);
- rootless Podman through a `docker` wrapper, as the unprivileged test user ``nanoclaw-it``
  (subordinate ids, /run/user/UID, native overlay storage; created once, kept like the images);
- the fake agent images of tests/fixtures/agent (test doubles, not NanoClaw), one tag per
  behaviour, built FROM the cached Debian rootfs imported locally (no registry). They are
  rebuilt only when their recipe (fixture files + rootfs) changes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import images, services
from .common import REPO, STATE, HarnessError, log, require, run, sha256_of

FIXTURE_DIR = REPO / "tests" / "fixtures" / "agent"
MODES = ["ok", "no-markers", "bad-json", "exit-1", "hang", "status-error", "several-outputs"]
BASE = "localhost/nanoclaw-fixture-base:debian12"
AGENT = "localhost/nanoclaw-fixture-agent"
TEST_USER = "nanoclaw-it"
DOCKER0 = Path("/sys/class/net/docker0")
SUBIDS = "300000-365535"
DOCKER_SHIM = (
    '#!/bin/sh\n# docker -> podman, as the podman-docker package provides (nanoclaw.provision test user)\nexec /usr/bin/podman "$@"\n'
)
STORAGE_CONF = (
    '# nanoclaw.provision test user: native rootless overlay (kernel >= 5.13), no fuse-overlayfs\n[storage]\ndriver = "overlay"\n'
)


def recipe() -> str:
    files = sorted(p for p in FIXTURE_DIR.iterdir() if p.is_file())
    tarball = images.rootfs_tarball(images.TARGETS[0]).name
    return sha256_of(tarball, *[p.name for p in files], *files)[:16]


# ---------------------------------------------------------------- engines
def ensure_dockerd() -> None:
    """A Docker engine for root: reuse one that answers, else start Debian's dockerd (stopped at the end of the run)."""
    require("dockerd", "apt-get install -y docker.io")
    if run(["docker", "info"], check=False, capture=True, quiet=True).returncode == 0:
        if services.running("dockerd") and not DOCKER0.exists():
            # Ours, and its bridge is gone: a dockerd with "bridge": "none" in this network namespace
            # (the agent_image_docker targets) deletes docker0 when it starts. Restarted, ours makes it again.
            log("the harness's dockerd lost its docker0 bridge; restarting it")
            services.stop_daemon("dockerd")
        else:
            log("a Docker engine already answers; using it")
            return
    services.start_daemon(
        "dockerd",
        ["dockerd", "--host=unix:///var/run/docker.sock", f"--pidfile={STATE / 'dockerd.pid'}"],
        ready=["docker", "info"],
        log_path=STATE / "dockerd.log",
        timeout=90,
    )


def _write_owned(path: Path, content: str, uid: int, gid: int, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != content:
        path.write_text(content)
    path.chmod(mode)
    for part in [path, *path.parents]:
        if part == Path(pwd.getpwuid(uid).pw_dir):
            break
        os.chown(part, uid, gid)


def ensure_test_user() -> pwd.struct_passwd:
    """The unprivileged user whose rootless Podman the tests drive through a `docker` wrapper."""
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", "nanoclaw.provision integration tests", TEST_USER])
        entry = pwd.getpwnam(TEST_USER)
    for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        lines = Path(path).read_text().splitlines() if Path(path).exists() else []
        if not any(line.split(":", 1)[0] in (TEST_USER, str(entry.pw_uid)) for line in lines):
            run(["usermod", flag, SUBIDS, TEST_USER])
    runtime = Path(f"/run/user/{entry.pw_uid}")
    runtime.mkdir(parents=True, exist_ok=True)
    os.chown(runtime, entry.pw_uid, entry.pw_gid)
    runtime.chmod(0o700)
    home = Path(entry.pw_dir)
    _write_owned(home / ".local" / "bin" / "docker", DOCKER_SHIM, entry.pw_uid, entry.pw_gid, 0o755)
    _write_owned(home / ".config" / "containers" / "storage.conf", STORAGE_CONF, entry.pw_uid, entry.pw_gid, 0o644)
    return entry


def user_cli(entry: pwd.struct_passwd, binary: str = "podman") -> list[str]:
    """argv prefix that runs ``binary`` as the test user with a login-like environment."""
    return [
        "runuser",
        "-u",
        entry.pw_name,
        "--",
        "env",
        "-i",
        f"HOME={entry.pw_dir}",
        f"USER={entry.pw_name}",
        f"LOGNAME={entry.pw_name}",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        f"XDG_RUNTIME_DIR=/run/user/{entry.pw_uid}",
        binary,
    ]


# ---------------------------------------------------------------- images
def _label(cli: list[str], image: str, label: str) -> str | None:
    proc = run(
        [*cli, "image", "inspect", image, "--format", f'{{{{ index .Config.Labels "{label}" }}}}'], check=False, capture=True, quiet=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _import_base(cli: list[str], tarball: Path, tag: str) -> None:
    changes = ["--change", 'CMD ["/bin/bash"]', "--change", f"LABEL nanoclaw.fixture.base={tarball.name}"]
    log(f"$ {' '.join(cli[-1:])} import {tarball.name} {BASE} ({tag})")
    with tarball.open("rb") as data:
        proc = subprocess.run([*cli, "import", *changes, "-", BASE], stdin=data, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"importing the fixture base image for {tag} failed: {proc.stderr.strip()[-500:]}")


def build_args(mode: str, digest: str) -> list[str]:
    return ["--build-arg", f"MODE={mode}", "--build-arg", f"RECIPE={digest}", "--build-arg", f"BASE={BASE}"]


def ensure_fixture_images(cli: list[str], tag: str, modes: tuple[str, ...] | None = None) -> int:
    """Build fixture variants (every one by default) for one engine (``cli`` is its argv prefix). Returns images built."""
    digest = recipe()
    modes = tuple(modes or MODES)
    if all(_label(cli, f"{AGENT}:{mode}", "nanoclaw.fixture.recipe") == digest for mode in modes):
        log(f"fixture images current for {tag} (recipe {digest})")
        return 0
    tarball = images.rootfs_tarball(images.TARGETS[0])
    if _label(cli, BASE, "nanoclaw.fixture.base") != tarball.name:
        _import_base(cli, tarball, tag)
    with tempfile.TemporaryDirectory(prefix="nanoclaw-fixture-context-") as tmp:
        context = Path(tmp) / "agent"
        shutil.copytree(FIXTURE_DIR, context)
        os.chmod(tmp, 0o755)
        for mode in modes:
            run(
                # --no-cache: Podman 4.3's layer cache ignores build-argument values (every tag came out the same image).
                [
                    *cli,
                    "build",
                    "--no-cache",
                    *build_args(mode, digest),
                    "-t",
                    f"{AGENT}:{mode}",
                    "-f",
                    str(context / "Containerfile"),
                    str(context),
                ],
                capture=True,
            )
    return len(modes)


def current() -> bool:
    """Whether both engines hold every fixture image of the current recipe (nothing to build)."""
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        return False
    if shutil.which("docker") is None or run(["docker", "info"], check=False, capture=True, quiet=True).returncode != 0:
        return False
    digest = recipe()
    engines = (["docker"], user_cli(entry))
    return all(_label(cli, f"{AGENT}:{mode}", "nanoclaw.fixture.recipe") == digest for cli in engines for mode in MODES)


def prepare() -> dict[str, str]:
    """Everything the module integration tests need; returns what they should use."""
    require("runuser", "apt-get install -y util-linux")
    ensure_dockerd()
    built = ensure_fixture_images(["docker"], "docker (root)")
    entry = ensure_test_user()
    built += ensure_fixture_images(user_cli(entry), f"rootless podman ({entry.pw_name})")
    log(f"fixture images built: {built}")
    return {"NANOCLAW_IT_USER": entry.pw_name, "NANOCLAW_IT_IMAGE": AGENT}
