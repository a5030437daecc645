"""The ansible-core and Python range the collection claims, and what tests both ends of it.

- ansible-core: ``requires_ansible`` of meta/runtime.yml. Its lower bound is the OLDEST release
  the collection claims; the project venv's ansible-core (from tests/requirements.txt) is the
  NEWEST. The oldest gets a venv of its own (ansible-core only, plus the unit tests' pytest and
  hypothesis at the project's pins), keyed like the project venv and cached next to it.
- Python on managed hosts: ``modules: python_requires`` of tests/config.yml. Its lower bound is
  the FLOOR; ansible-test compiles and imports the modules and module_utils with it.
- ansible-test downloads a pip bootstrap script for each virtualenv it creates, from a host
  these machines cannot reach; ``provide_pip_bootstrap`` puts tests/harness/files/get_pip_offline.py
  in its cache instead (docs/TESTING.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .common import CACHE, REPO, HarnessError, sha256_of
from .setup_env import build_venv

RUNTIME = REPO / "meta" / "runtime.yml"
TEST_CONFIG = REPO / "tests" / "config.yml"
REQUIREMENTS = REPO / "tests" / "requirements.txt"
PIP_SHIM = REPO / "tests" / "harness" / "files" / "get_pip_offline.py"
# What the unit tests need besides ansible-core (same pins as the project venv).
UNIT_TOOLS = ("pytest", "hypothesis")


def _lower_bound(text: str, key: str, source: Path) -> str:
    match = re.search(rf"^\s*{key}:\s*[\"']?>=\s*([0-9][0-9.]*)", text, re.MULTILINE)
    if not match:
        raise HarnessError(f"{source.relative_to(REPO)}: no '{key}: \">=X.Y\"' to read the lower bound from")
    return match.group(1)


def oldest_core() -> str:
    """The oldest ansible-core the collection claims (meta/runtime.yml requires_ansible), e.g. 2.17.0."""
    return _lower_bound(RUNTIME.read_text(), "requires_ansible", RUNTIME)


def target_python_floor() -> str:
    """The oldest Python the modules claim on managed hosts (tests/config.yml python_requires), e.g. 3.8."""
    return _lower_bound(TEST_CONFIG.read_text(), "python_requires", TEST_CONFIG)


def find_python(version: str) -> Path | None:
    """An interpreter of ``version`` (3.8) that runs: on PATH, in /usr/bin or /usr/local/bin, or a pyenv install."""
    candidates: list[Path] = []
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(Path(found))
    candidates += [Path(f"/usr/bin/python{version}"), Path(f"/usr/local/bin/python{version}")]
    candidates += sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in candidates:
        if not candidate.exists():
            continue
        # A pyenv shim exists for every installed version but fails for one that is not selected.
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], check=False, capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate.resolve()
    return None


def pythons_dir(versions: list[str]) -> Path:
    """A directory of ``pythonX.Y`` links to the interpreters found, for the front of ansible-test's PATH."""
    directory = CACHE / "pythons" / "bin"
    directory.mkdir(parents=True, exist_ok=True)
    for version in versions:
        interpreter = find_python(version)
        link = directory / f"python{version}"
        if interpreter is None:
            link.unlink(missing_ok=True)
            continue
        if not link.is_symlink() or link.resolve() != interpreter:
            link.unlink(missing_ok=True)
            link.symlink_to(interpreter)
    return directory


def _pins(names: tuple[str, ...]) -> list[str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(0)
    missing = [n for n in names if n not in pins]
    if missing:
        raise HarnessError(f"tests/requirements.txt pins no {missing}")
    return [pins[n] for n in names]


def core_venv(version: str) -> Path:
    requirements = [f"ansible-core=={version}", *_pins(UNIT_TOOLS)]
    digest = sha256_of("\n".join(requirements), f"{sys.version_info.major}.{sys.version_info.minor}")[:12]
    return CACHE / f"venv-core-{version}-{digest}"


def ensure_core_venv(version: str) -> Path:
    """A venv with ``ansible-core==version`` (and the unit tests' tools), unless it exists complete."""
    requirements = [f"ansible-core=={version}", *_pins(UNIT_TOOLS)]
    return build_venv(core_venv(version), requirements, "\n".join(requirements) + "\n", f"virtualenv for ansible-core {version}")


def provide_pip_bootstrap(venv: Path) -> None:
    """Put the offline stand-in for ansible-test's pip bootstrap script where ansible-test looks first.

    ansible-test (``_util/target/setup/requirements.py``) uses ``~/.ansible/test/cache/get_pip_<version>.py``
    when it exists and downloads it otherwise, from a host these machines cannot reach."""
    if not PIP_SHIM.is_file():
        raise HarnessError(
            f"missing {PIP_SHIM.relative_to(REPO)}: ansible-test would try to download its pip bootstrap script "
            "(get-pip) from a host this machine cannot reach; restore the file from git (docs/TESTING.md, "
            "'Why ansible-test works offline here')"
        )
    site = next((venv / "lib").glob("python3*/site-packages/ansible_test"), None)
    if site is None:
        raise HarnessError(f"no ansible-test in {venv}")
    source = (site / "_internal" / "python_requirements.py").read_text()
    versions = set(re.findall(r"pip='([0-9.]+)'", source))
    if not versions:
        raise HarnessError(f"cannot find the pip version ansible-test bootstraps ({site})")
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    script = PIP_SHIM.read_text()
    for version in versions:
        target = cache / f"get_pip_{version.replace('.', '_')}.py"
        if not target.exists() or target.read_text() != script:
            target.write_text(script)
