"""Target images for molecule: Debian rootfs from debootstrap, systemd as PID 1.

No container registry is reachable, so every image a test uses is built here.
An image is rebuilt only when its recipe changes: the recipe hash is stored as
the image label ``nanoclaw.recipe`` and the rootfs tarball is cached by hash.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .common import CACHE, HarnessError, log, require, run, sha256_of

RECIPE_VERSION = "1"
TARGET_PACKAGES = [
    "python3",
    "python3-apt",
    "systemd",
    "systemd-sysv",
    "dbus",
    "sudo",
    "git",
    "ca-certificates",
    "procps",
    "iproute2",
]


@dataclass(frozen=True)
class TargetImage:
    suite: str
    version: str

    @property
    def name(self) -> str:
        return f"localhost/nanoclaw-target:debian{self.version}"

    def recipe_hash(self) -> str:
        recipe = {
            "version": RECIPE_VERSION,
            "suite": self.suite,
            "packages": TARGET_PACKAGES,
            "script": _customize_script(),
        }
        return sha256_of(json.dumps(recipe, sort_keys=True))[:16]


TARGETS = [TargetImage("bookworm", "12"), TargetImage("trixie", "13")]


def debian_mirror() -> str:
    """The Debian mirror this host already uses (or NANOCLAW_DEBIAN_MIRROR)."""
    override = os.environ.get("NANOCLAW_DEBIAN_MIRROR")
    if override:
        return override
    candidates: list[str] = []
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.name.endswith((".disabled", ".save")) or "disabled" in path.name:
            continue
        text = path.read_text(errors="replace")
        candidates += re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
        candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M)
    for uri in candidates:
        if re.search(r"/debian/?$", uri):
            return uri.rstrip("/")
    raise HarnessError("cannot find a Debian mirror in /etc/apt/sources.list*: set NANOCLAW_DEBIAN_MIRROR=<http URL of a Debian archive>")


def _customize_script() -> str:
    # Runs inside the fresh rootfs (chroot). Keep it deterministic: it is part of the hash.
    return "\n".join(
        [
            "set -eu",
            # Units that cannot work in a container and only add noise or delay.
            "for u in systemd-modules-load.service getty@tty1.service systemd-udevd.service"
            " systemd-remount-fs.service sys-kernel-config.mount; do ln -sf /dev/null /etc/systemd/system/$u; done",
            "echo 'nanoclaw-target' > /etc/hostname",
            "apt-get clean",
            "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
            # Let ansible find a UTF-8 locale without generating one.
            "echo 'LANG=C.UTF-8' > /etc/default/locale",
        ]
    )


def _podman_label(image: str) -> str | None:
    proc = run(
        ["podman", "image", "inspect", image, "--format", '{{ index .Labels "nanoclaw.recipe" }}'], check=False, capture=True, quiet=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _docker_label(image: str) -> str | None:
    proc = run(
        ["docker", "image", "inspect", image, "--format", '{{ index .Config.Labels "nanoclaw.recipe" }}'],
        check=False,
        capture=True,
        quiet=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def rootfs_tarball_cached(target: TargetImage) -> bool:
    return (CACHE / "images" / f"debian{target.version}-{target.recipe_hash()}.tar").exists()


def rootfs_tarball(target: TargetImage) -> Path:
    """Build (or reuse) the rootfs tarball for ``target``."""
    digest = target.recipe_hash()
    out_dir = CACHE / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    tarball = out_dir / f"debian{target.version}-{digest}.tar"
    if tarball.exists():
        log(f"rootfs for debian{target.version} cached ({tarball.name})")
        return tarball
    require("debootstrap", "apt-get install -y debootstrap")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix=f"nanoclaw-rootfs-{target.suite}-", dir=out_dir) as tmp:
        root = Path(tmp) / "root"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(TARGET_PACKAGES),
                target.suite,
                str(root),
                mirror,
            ],
            capture=True,
        )
        run(["chroot", str(root), "/bin/sh", "-c", _customize_script()])
        partial = tarball.with_suffix(".partial")
        run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."])
        partial.rename(tarball)
    # Older recipes of the same target are dead weight.
    for old in out_dir.glob(f"debian{target.version}-*.tar"):
        if old != tarball:
            old.unlink()
    return tarball


def _import_changes(target: TargetImage) -> list[str]:
    changes = [
        'CMD ["/sbin/init"]',
        "STOPSIGNAL SIGRTMIN+3",
        "ENV container=podman",
        f"LABEL nanoclaw.recipe={target.recipe_hash()}",
        "LABEL org.opencontainers.image.description=nanoclaw.provision-test-target",
    ]
    argv: list[str] = []
    for change in changes:
        argv += ["--change", change]
    return argv


def ensure_podman_image(target: TargetImage) -> bool:
    """Import the target into Podman unless it is there from the same recipe. Returns True if imported."""
    if _podman_label(target.name) == target.recipe_hash():
        log(f"{target.name} is current (recipe {target.recipe_hash()})")
        return False
    tarball = rootfs_tarball(target)
    run(["podman", "import", *_import_changes(target), str(tarball), target.name], capture=True)
    run(["podman", "image", "prune", "-f"], capture=True, quiet=True)
    return True


def ensure_docker_image(target: TargetImage) -> bool:
    """Same as ensure_podman_image for a running Docker engine."""
    if shutil.which("docker") is None:
        raise HarnessError("missing host prerequisite 'docker': install it with `apt-get install -y docker.io`")
    if _docker_label(target.name) == target.recipe_hash():
        log(f"{target.name} is current in docker (recipe {target.recipe_hash()})")
        return False
    tarball = rootfs_tarball(target)
    changes = [a.replace("ENV container=podman", "ENV container=docker") for a in _import_changes(target)]
    run(["docker", "import", *changes, str(tarball), target.name], capture=True)
    return True


def build_all(docker: bool = False) -> list[str]:
    # The rootfs of the targets that need one, built at the same time: debootstrap waits on
    # downloads and dpkg more than it computes, and every later stage waits for this one.
    todo = [t for t in TARGETS if _podman_label(t.name) != t.recipe_hash() or (docker and _docker_label(t.name) != t.recipe_hash())]
    if len(todo) > 1:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(todo)) as pool:
            for future in [pool.submit(rootfs_tarball, t) for t in todo]:
                future.result()
    built = []
    for target in TARGETS:
        if ensure_podman_image(target):
            built.append(target.name)
        if docker and ensure_docker_image(target):
            built.append(f"docker:{target.name}")
    return built
