"""Project virtualenv (pinned tooling) and the collection link, both cached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .common import CACHE, REPO, HarnessError, log, run, sha256_of

REQUIREMENTS = REPO / "tests" / "requirements.txt"
COLLECTIONS = REPO / ".cache" / "collections"
COLLECTION_LINK = COLLECTIONS / "ansible_collections" / "nanoclaw" / "provision"


def venv_dir() -> Path:
    digest = sha256_of(REQUIREMENTS, f"{sys.version_info.major}.{sys.version_info.minor}")[:12]
    return CACHE / f"venv-{digest}"


def venv_bin() -> Path:
    return venv_dir() / "bin"


def venv_current() -> bool:
    """Whether the venv of the pinned requirements exists complete (nothing to install)."""
    return (venv_dir() / ".nanoclaw-complete").exists()


def build_venv(venv: Path, pip_args: list[str], stamp: str, what: str = "virtualenv") -> Path:
    """A venv at ``venv`` with ``pip install -q <pip_args>``, unless it exists complete: its marker,
    written last with ``stamp`` (what was installed), says so. The harness's venvs all come from here."""
    marker = venv / ".nanoclaw-complete"
    if marker.exists():
        log(f"{what} current: {venv}")
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    CACHE.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run([sys.executable, "-m", "venv", "--help"], capture_output=True, check=False)
    if probe.returncode != 0:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            run(["apt-get", "install", "-y", "-q", "python3-venv"])
        else:
            raise HarnessError("missing host prerequisite 'python3-venv': install it with `apt-get install -y python3-venv`")
    run([sys.executable, "-m", "venv", str(venv)])
    pip = str(venv / "bin" / "pip")
    run([pip, "install", "-q", "--upgrade", "pip"])
    run([pip, "install", "-q", *pip_args])
    marker.write_text(stamp)
    return venv


def ensure_venv() -> Path:
    """Create the venv for the pinned requirements unless it exists complete."""
    return build_venv(venv_dir(), ["-r", str(REQUIREMENTS)], REQUIREMENTS.read_text())


def ensure_collection_link() -> Path:
    """Make the checkout resolvable as nanoclaw.provision (see ansible.cfg)."""
    COLLECTION_LINK.parent.mkdir(parents=True, exist_ok=True)
    if COLLECTION_LINK.is_symlink() and COLLECTION_LINK.resolve() == REPO:
        return COLLECTION_LINK
    if COLLECTION_LINK.is_symlink() or COLLECTION_LINK.exists():
        COLLECTION_LINK.unlink()
    COLLECTION_LINK.symlink_to(os.path.relpath(REPO, COLLECTION_LINK.parent))
    return COLLECTION_LINK


def tool_env() -> dict[str, str]:
    """Environment for every tool the harness runs from the venv."""
    venv = venv_dir()
    return {
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(venv),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        # The connection `podman` with pipelining (ansible_plugins/connection/podman.py says why).
        "ANSIBLE_CONNECTION_PLUGINS": str(REPO / "tests" / "harness" / "ansible_plugins" / "connection"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "PY_COLORS": "0",
        "NO_COLOR": "1",
        "MOLECULE_NO_LOG": "false",
    }


def load_yaml(path: Path) -> object:
    """Parse a YAML file with the venv's PyYAML (the harness itself runs on a bare python3)."""
    code = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))"
    proc = run([str(venv_bin() / "python"), "-c", code, str(path)], capture=True, quiet=True)
    return json.loads(proc.stdout)
