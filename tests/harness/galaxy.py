"""galaxy-importer, the code Ansible Galaxy imports a collection with, run on the built tarball.

It lives in a venv of its own (tests/requirements-galaxy-importer.txt: its attrs pin clashes with
the project venv), keyed by that file and cached like the project venv. The configuration
(tests/galaxy-importer.cfg) turns off everything that needs a container (ansible-test) and the
ansible-lint pass the lint stage makes already; ansible-doc runs, as on Galaxy.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .common import CACHE, REPO, HarnessError, log, run, sha256_of
from .setup_env import build_venv

REQUIREMENTS = REPO / "tests" / "requirements-galaxy-importer.txt"
CONFIG = REPO / "tests" / "galaxy-importer.cfg"
OUTPUT = REPO / "tests" / "output" / "galaxy-importer"
SUCCESS = "Importer processing completed successfully"


def venv_dir() -> Path:
    digest = sha256_of(REQUIREMENTS, f"{sys.version_info.major}.{sys.version_info.minor}")[:12]
    return CACHE / f"venv-galaxy-importer-{digest}"


def ensure_venv() -> Path:
    return build_venv(venv_dir(), ["-r", str(REQUIREMENTS)], REQUIREMENTS.read_text(), "galaxy-importer virtualenv")


def import_tarball(tarball: Path) -> dict:
    """Import ``tarball`` as Galaxy would; the log goes to tests/output/galaxy-importer/import.log.

    Fails unless the import succeeds with no WARNING or ERROR line, and the result lists every
    role (with its README) and every module (with the documentation ansible-doc read)."""
    venv = ensure_venv()
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(venv),
        "GALAXY_IMPORTER_CONFIG": str(CONFIG),
    }
    proc = run([str(venv / "bin" / "python"), "-m", "galaxy_importer.main", str(tarball)], env=env, cwd=OUTPUT, capture=True, check=False)
    text = proc.stdout + proc.stderr
    (OUTPUT / "import.log").write_text(text)
    print(text, end="", flush=True)
    problems = [line for line in text.splitlines() if line.startswith(("WARNING:", "ERROR:"))]
    if proc.returncode != 0 or SUCCESS not in text or problems:
        detail = problems or text.strip().splitlines()[-1:]
        raise HarnessError(f"galaxy-importer rejected {tarball.name} (exit {proc.returncode}): {detail}")
    result = json.loads((OUTPUT / "importer_result.json").read_text())
    contents = {(c["content_type"], c["name"]) for c in result["contents"]}
    roles = {p.name for p in (REPO / "roles").iterdir() if p.is_dir()}
    modules = {p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__"}
    missing = sorted({("role", r) for r in roles} - contents) + sorted({("module", m) for m in modules} - contents)
    if missing:
        raise HarnessError(f"galaxy-importer did not find {missing} in {tarball.name}")
    docs = {(c["content_type"], c["content_name"]): c for c in result["docs_blob"]["contents"]}
    no_readme = sorted(r for r in roles if not (docs.get(("role", r)) or {}).get("readme_html"))
    no_doc = sorted(m for m in modules if not (docs.get(("module", m)) or {}).get("doc_strings"))
    if no_readme or no_doc:
        raise HarnessError(f"galaxy-importer found roles without a README {no_readme}, modules without documentation {no_doc}")
    log(f"galaxy-importer imported {tarball.name}: {len(roles)} roles, {len(modules)} modules; log in {OUTPUT / 'import.log'}")
    return result
