"""FIXTURE NanoClaw-shaped repositories and a Node.js tarball for the nanoclaw role's tests.

Nothing here is upstream NanoClaw code. The fixture only has the shape the role reads
(package.json version/engines/packageManager, a lockfile, a build script,
container/Dockerfile, container/build.sh, .nvmrc for v2) and a tiny host program that,
like upstream, runs `docker info` at start (exits when it fails) and then stays running.

Two bare repositories, one per NanoClaw generation, each with two commits on `main`
and a third commit on the branch `broken` whose build fails. Commits are made with fixed
dates and names, so their SHAs only change when this file changes. Zero dependencies:
`pnpm install --frozen-lockfile` and `npm ci` need nothing beyond the package manager.

Served to the molecule targets (podman containers on the default bridge network) by
`git daemon` and a static HTTP server bound to the bridge's gateway address; the HTTP
server is the stand-in internal mirror for the Node.js tarball, which is packed from
this machine's own Node installation (/usr/bin/node, npm, /usr/include/node).

    python3 -m tests.harness.fixture_repo build   # (re)generate, print fixture.json
    python3 -m tests.harness.fixture_repo serve   # build + start git daemon and HTTP server
    python3 -m tests.harness.fixture_repo stop    # stop both
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from tests.harness import services
from tests.harness.common import CHECKOUT_ID, REPO, STATE, HarnessError, run, sha256_of

# Inside the checkout (ignored by git) so molecule playbooks find fixture.json by a fixed path.
ROOT = REPO / ".cache" / "nanoclaw-fixture"
META = ROOT / "fixture.json"
# One port pair per checkout: several checkouts may serve fixtures at once.
GIT_PORT = 21000 + int(CHECKOUT_ID, 16) % 4000
HTTP_PORT = GIT_PORT + 4000
DAEMONS = ("nanoclaw-fixture-git", "nanoclaw-fixture-http")

PNPM_VERSION = "10.33.0"

HOST_PROGRAM = r"""'use strict';
// FIXTURE host program of the nanoclaw.provision tests -- NOT NanoClaw.
// Like NanoClaw's host process it runs `docker info` at start and exits when that fails,
// then stays running. It reports what it saw in logs/fixture-status.json.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = process.cwd();
const build = JSON.parse(fs.readFileSync(path.join(__dirname, 'build-info.json'), 'utf8'));

// .env read back with NanoClaw's rules: one KEY=VALUE per line, blank lines and lines
// starting with # skipped, key and value trimmed, one pair of matching surrounding
// quotes removed, nothing else interpreted.
function readEnv(file) {
  const out = {};
  let text;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) { return out; }
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const eq = t.indexOf('=');
    if (eq === -1) continue;
    const key = t.slice(0, eq).trim();
    let value = t.slice(eq + 1).trim();
    if (value.length >= 2 && ((value[0] === '"' && value.endsWith('"')) || (value[0] === "'" && value.endsWith("'")))) {
      value = value.slice(1, -1);
    }
    out[key] = value;
  }
  return out;
}

try {
  execFileSync('docker', ['info'], { timeout: 10000, stdio: 'ignore' });
} catch (err) {
  console.error('FATAL: docker info failed, is the container runtime running? ' + err.message);
  process.exit(1);
}

fs.mkdirSync(path.join(root, 'logs'), { recursive: true });
const status = {
  pid: process.pid,
  version: build.version,
  generation: build.generation,
  docker_info: 'ok',
  env: readEnv(path.join(root, '.env')),
  environment: {
    CONTAINER_IMAGE: process.env.CONTAINER_IMAGE || null,
    DOCKER_HOST: process.env.DOCKER_HOST || null,
    PATH: process.env.PATH || null,
  },
};
fs.writeFileSync(path.join(root, 'logs', 'fixture-status.json'), JSON.stringify(status, null, 2), { mode: 0o600 });
console.log(`fixture host ${build.version} (${build.generation}) running as pid ${process.pid}`);
setInterval(() => {}, 1 << 30);
"""

BUILD_SCRIPT = """'use strict';
// FIXTURE build script: "compiles" src/ into dist/ and stamps the version.
const fs = require('fs');
const pkg = require('../package.json');
fs.mkdirSync('dist', { recursive: true });
fs.copyFileSync('src/index.js', 'dist/index.js');
const generation = 'v' + pkg.version.split('.')[0];
fs.writeFileSync('dist/build-info.json', JSON.stringify({ version: pkg.version, generation }) + '\\n');
console.log('built ' + pkg.version);
"""

BROKEN_BUILD_SCRIPT = """'use strict';
// FIXTURE build script that fails (the role must keep the previous build).
console.error('fixture: this commit does not build');
process.exit(1);
"""

DOCKERFILE = """# FIXTURE agent image recipe (shape of NanoClaw's container/Dockerfile only).
FROM node:22-slim
COPY agent.sh /app/agent.sh
USER 1000
ENTRYPOINT ["/bin/sh", "/app/agent.sh"]
"""

BUILD_SH = """#!/bin/sh
# FIXTURE: builds the agent image like NanoClaw's container/build.sh [TAG].
set -eu
cd "$(dirname "$0")"
IMAGE_NAME="${IMAGE_NAME:-nanoclaw-agent}"
TAG="${1:-latest}"
${CONTAINER_RUNTIME:-docker} build -t "${IMAGE_NAME}:${TAG}" .
"""

AGENT_SH = """#!/bin/sh
# FIXTURE agent: prints one result between NanoClaw's v1 markers.
echo '---NANOCLAW_OUTPUT_START---'
echo '{"status":"success","result":"fixture"}'
echo '---NANOCLAW_OUTPUT_END---'
"""

# As upstream's .gitignore at v1.2.53 and v2.0.64: groups/ is ignored except the two CLAUDE.md
# files upstream tracks (and the running host changes: v1 agents write memory into them, v2's
# start-up migration renames and deletes them), data/ store/ logs/ .env ignored.
GITIGNORE = (
    "node_modules/\ndist/\ndata/\nstore/\nlogs/\n.env\n"
    "groups/*\n!groups/main/\n!groups/global/\ngroups/main/*\ngroups/global/*\n!groups/main/CLAUDE.md\n!groups/global/CLAUDE.md\n"
)

# FIXTURE of upstream's src/config.ts at each pin: the .env keys it reads (readEnvFile([...]); the
# nanoclaw_checkout module reads them from here). Not compiled; the fixture host reads .env itself.
CONFIG_TS = {
    1: "// FIXTURE of NanoClaw v1.2.53 src/config.ts (its .env keys only); not NanoClaw.\n"
    "const envConfig = readEnvFile([\n  'ASSISTANT_NAME',\n  'ASSISTANT_HAS_OWN_NUMBER',\n"
    "  'ONECLI_URL',\n  'ONECLI_API_KEY',\n  'TZ',\n]);\n",
    2: "// FIXTURE of NanoClaw v2.0.64 src/config.ts and src/providers/claude.ts (their .env keys only); not NanoClaw.\n"
    "const envConfig = readEnvFile(['ASSISTANT_NAME', 'ASSISTANT_HAS_OWN_NUMBER', 'ONECLI_URL', 'ONECLI_API_KEY', 'TZ']);\n"
    "const dotenv = readEnvFile(['ANTHROPIC_BASE_URL']);\n",
}


def _package(generation: int, version: str, package_manager: bool = True) -> dict:
    pkg: dict = {
        "name": "nanoclaw",
        "version": version,
        "description": "FIXTURE of the nanoclaw.provision tests, shaped like NanoClaw; not NanoClaw",
        "private": True,
        "main": "dist/index.js",
        "scripts": {"build": "node scripts/build.js", "start": "node dist/index.js"},
        "engines": {"node": ">=20"},
    }
    if generation == 2 and package_manager:
        pkg["packageManager"] = f"pnpm@{PNPM_VERSION}"
    return pkg


def _lockfile(generation: int, version: str) -> tuple[str, str]:
    if generation == 2:
        text = "lockfileVersion: '9.0'\n\nsettings:\n  autoInstallPeers: true\n  excludeLinksFromLockfile: false\n\nimporters:\n\n  .: {}\n"
        return "pnpm-lock.yaml", text
    lock = {
        "name": "nanoclaw",
        "version": version,
        "lockfileVersion": 3,
        "requires": True,
        "packages": {"": {"name": "nanoclaw", "version": version, "engines": {"node": ">=20"}}},
    }
    return "package-lock.json", json.dumps(lock, indent=2) + "\n"


def _write_tree(work: Path, generation: int, version: str, broken: bool = False, package_manager: bool = True) -> None:
    files = {
        "README.md": f"# FIXTURE (not NanoClaw)\n\nGeneration {generation} test fixture of nanoclaw.provision, version {version}.\n",
        ".gitignore": GITIGNORE,
        "package.json": json.dumps(_package(generation, version, package_manager), indent=2) + "\n",
        "scripts/build.js": BROKEN_BUILD_SCRIPT if broken else BUILD_SCRIPT,
        "src/index.js": HOST_PROGRAM,
        "src/config.ts": CONFIG_TS[generation],
        # Tracked like upstream's (its groups/main/CLAUDE.md and groups/global/CLAUDE.md templates).
        "groups/main/CLAUDE.md": f"# FIXTURE main group memory template ({version})\n",
        "groups/global/CLAUDE.md": f"# FIXTURE global memory template ({version})\n",
        "container/Dockerfile": DOCKERFILE,
        "container/build.sh": BUILD_SH,
        "container/agent.sh": AGENT_SH,
    }
    name, text = _lockfile(generation, version)
    files[name] = text
    if generation == 2:
        files[".nvmrc"] = "22\n"
    for rel, content in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (work / "container" / "build.sh").chmod(0o755)


def _git(work: Path, *args: str, date: str = "2026-01-01T00:00:00Z") -> str:
    env = {
        "GIT_AUTHOR_NAME": "nanoclaw.provision fixture",
        "GIT_AUTHOR_EMAIL": "fixture@nanoclaw-provision.invalid",
        "GIT_COMMITTER_NAME": "nanoclaw.provision fixture",
        "GIT_COMMITTER_EMAIL": "fixture@nanoclaw-provision.invalid",
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return run(["git", *args], cwd=work, env=env, capture=True, quiet=True).stdout.strip()


def _make_repo(generation: int, versions: tuple[str, str]) -> dict:
    bare = ROOT / f"nanoclaw-v{generation}.git"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        _git(work, "init", "-q", "-b", "main")
        commits = []
        for day, version in enumerate(versions, start=1):
            _write_tree(work, generation, version)
            _git(work, "add", "-A")
            _git(work, "commit", "-q", "-m", f"fixture v{generation}: {version}", date=f"2026-01-0{day}T00:00:00Z")
            commits.append(_git(work, "rev-parse", "HEAD"))
        _git(work, "checkout", "-q", "-b", "broken")
        _write_tree(work, generation, versions[1], broken=True)
        _git(work, "commit", "-q", "-am", "fixture: a commit whose build fails", date="2026-01-09T00:00:00Z")
        broken = _git(work, "rev-parse", "HEAD")
        # Bad input the role must refuse (naming the variable, keeping the previous build): a
        # package.json major that is neither 1 nor 2, and a v2 without packageManager.
        odd = {}
        for branch, version, pm in (("unknown-major", "3.0.0", True), ("no-package-manager", f"{generation}.9.0", False)):
            _git(work, "checkout", "-q", "-B", branch, "main")
            _write_tree(work, generation, version, package_manager=pm)
            _git(work, "commit", "-q", "-am", f"fixture: {branch}", date="2026-01-10T00:00:00Z")
            odd[branch] = _git(work, "rev-parse", "HEAD")
        _git(work, "checkout", "-q", "main")
        if bare.exists():
            shutil.rmtree(bare)
        run(["git", "clone", "-q", "--bare", str(work), str(bare)], quiet=True, capture=True)
    (bare / "git-daemon-export-ok").touch()
    # One file to copy into a target for the file:// URL (a directory copy is slow there).
    archive = ROOT / f"nanoclaw-v{generation}.git.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bare, arcname=bare.name)
    return {
        "first": commits[0],
        "second": commits[1],
        "broken": broken,
        "unknown_major": odd["unknown-major"],
        "no_package_manager": odd["no-package-manager"],
        "versions": list(versions),
        "path": str(bare),
        "archive": str(archive),
    }


def _node_tarball() -> dict:
    """Pack this machine's Node.js like an official linux-x64 tarball (stand-in internal mirror)."""
    node = Path("/usr/bin/node")
    npm_dir = Path("/usr/lib/node_modules/npm")
    headers = Path("/usr/include/node")
    for needed in (node, npm_dir, headers):
        if not needed.exists():
            raise HarnessError(f"missing host prerequisite {needed}: the Node.js tarball stand-in is packed from it")
    version = run([str(node), "--version"], capture=True, quiet=True).stdout.strip()
    top = f"node-{version}-linux-x64"
    dest = ROOT / "mirror" / f"{top}.tar.gz"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".partial")

        def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
            tar.add(node, f"{top}/bin/node", filter=_reset)
            tar.add(npm_dir, f"{top}/lib/node_modules/npm", filter=_reset)
            tar.add(headers, f"{top}/include/node", filter=_reset)
            for name, target in (("npm", "npm-cli.js"), ("npx", "npx-cli.js")):
                link = tarfile.TarInfo(f"{top}/bin/{name}")
                link.type = tarfile.SYMTYPE
                link.linkname = f"../lib/node_modules/npm/bin/{target}"
                tar.addfile(_reset(link))
        partial.rename(dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return {"version": version, "file": dest.name, "sha256": digest, "top": top}


def gateway() -> str:
    """Gateway address of podman's default bridge: the molecule targets reach the host there."""
    proc = run(["podman", "network", "inspect", "podman"], capture=True, quiet=True)
    nets = json.loads(proc.stdout)
    for subnet in nets[0].get("subnets", []):
        gw = subnet.get("gateway", "")
        if gw and ":" not in gw:
            return gw
    raise HarnessError("podman's default network has no IPv4 gateway: cannot serve the fixture to the targets")


def current() -> bool:
    """Whether the repositories and tarball of this recipe are made already."""
    stamp = ROOT / ".recipe"
    return META.exists() and stamp.exists() and stamp.read_text() == sha256_of(Path(__file__))


def build() -> dict:
    recipe = sha256_of(Path(__file__))
    stamp = ROOT / ".recipe"
    if current():
        meta = json.loads(META.read_text())
    else:
        ROOT.mkdir(parents=True, exist_ok=True)
        meta = {
            "v1": _make_repo(1, ("1.2.53", "1.2.54")),
            "v2": _make_repo(2, ("2.0.64", "2.0.65")),
            "node": _node_tarball(),
            "pnpm_version": PNPM_VERSION,
        }
        stamp.write_text(recipe)
    addr = gateway()
    meta["root"] = str(ROOT)
    meta["git_url"] = f"git://{addr}:{GIT_PORT}"
    meta["http_url"] = f"http://{addr}:{HTTP_PORT}"
    # Replaced in one step: a molecule prepare may read it while the demo's set-up writes it.
    partial = META.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(meta, indent=2) + "\n")
    partial.replace(META)
    return meta


def serve() -> dict:
    """Serve the repositories and the tarball on every address: the targets reach them at the gateway
    of Podman's bridge (meta's URLs), which exists only while a container is attached to it, so the
    daemons cannot bind it before the first target runs. They are probed on the loopback address."""
    meta = build()
    logs = STATE / "logs"
    services.start_daemon(
        DAEMONS[0],
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--listen=0.0.0.0",
            f"--port={GIT_PORT}",
            f"--base-path={ROOT}",
            "--export-all",
            str(ROOT),
        ],
        ready=["git", "ls-remote", f"git://127.0.0.1:{GIT_PORT}/nanoclaw-v2.git"],
        log_path=logs / "fixture-git.log",
    )
    services.start_daemon(
        DAEMONS[1],
        [sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "--directory", str(ROOT / "mirror"), str(HTTP_PORT)],
        ready=[
            "python3",
            "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{HTTP_PORT}/{meta['node']['file']}').close()",
        ],
        log_path=logs / "fixture-http.log",
    )
    return meta


def stop() -> None:
    for name in DAEMONS:
        services.stop_daemon(name)


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "build"
    if action == "stop":
        stop()
        return 0
    meta = serve() if action == "serve" else build()
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
