"""Build the test cluster's Kubernetes binaries from the k8s.io/kubernetes Go module.

k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io/* staging
module with a path inside its own tree, and module zips leave nested modules out. So the
harness writes a throwaway main module that requires k8s.io/kubernetes at the pinned
release plus each staging module at the matching v0.Y.Z, replaces the staging modules with
those published versions, and builds the cmd packages. Binaries are cached by version
outside git (CACHE/k8s/<version>/), so only the first run on a machine pays the build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from .common import CACHE, HarnessError, log, run

# Pinned release. 1.33 is the newest line that still runs on cgroup v1 without opting in
# and whose kubelet still accepts containerd 1.6 (Debian 12's); the Go proxy serves it.
K8S_VERSION = os.environ.get("NANOCLAW_K8S_VERSION", "v1.33.13")
COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet")
GO = os.environ.get("NANOCLAW_GO", "/usr/local/go/bin/go")
# Compiler flags for every package of the build. The binaries are stripped by the linker
# (-s -w), so the DWARF the compiler would write for each of the ~3000 packages is thrown
# away: not writing it saves compile time and changes nothing the binaries do.
# NANOCLAW_K8S_GCFLAGS="" builds with Go's defaults (as before), another value replaces them.
GCFLAGS = os.environ.get("NANOCLAW_K8S_GCFLAGS", "all=-dwarf=false")


def bin_dir(version: str = K8S_VERSION) -> Path:
    return CACHE / "k8s" / version / "bin"


def _staging_version(version: str) -> str:
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if not match:
        raise HarnessError(f"NANOCLAW_K8S_VERSION must look like v1.33.13, got {version!r}")
    return f"v0.{match.group(1)}.{match.group(2)}"


def module_file(upstream: str, version: str) -> str:
    """go.mod of the throwaway module, from k8s.io/kubernetes's own go.mod at ``version``."""
    staging = _staging_version(version)
    # The sample-* staging modules are examples no command imports, and the proxy does
    # not serve every release of them.
    staged = sorted(
        m for m in set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", upstream, re.M)) if not m.startswith("k8s.io/sample-")
    )
    if not staged:
        raise HarnessError(f"k8s.io/kubernetes@{version} has no staging replace directives: is it a real release?")
    go_line = re.search(r"^go (\S+)", upstream, re.M)
    godebug = re.search(r"^godebug (.+)$", upstream, re.M)
    lines = ["module nanoclaw.test/k8sbuild", "", f"go {go_line.group(1) if go_line else '1.24.0'}", ""]
    if godebug:
        lines += [f"godebug {godebug.group(1)}", ""]
    lines += ["require (", f"\tk8s.io/kubernetes {version}"]
    lines += [f"\t{m} {staging}" for m in staged]
    lines += [")", "", "replace ("]
    lines += [f"\t{m} => {m} {staging}" for m in staged]
    lines += [")", ""]
    return "\n".join(lines)


def _ci() -> bool:
    return os.environ.get("CI") == "true"


def _go(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    # On a shared developer machine the build yields to everything else; in CI (the machine to
    # itself) it is one of `./run test`'s lanes, on the longest path of the run: not niced there.
    run([*([] if _ci() else ["nice", "-n", "10"]), GO, *argv], cwd=cwd, env=env)


def missing(version: str = K8S_VERSION, commands: tuple[str, ...] = COMMANDS) -> list[str]:
    """The binaries of ``commands`` not in the cache yet."""
    return [c for c in commands if not (bin_dir(version) / c).exists()]


def build_argv(jobs: str, ldflags: str, out: Path, commands: list[str] | tuple[str, ...], gcflags: str = GCFLAGS) -> list[str]:
    """`go build` arguments for ``commands`` (k8s.io/kubernetes/cmd/NAME) into ``out``."""
    return [
        "build",
        "-p",
        jobs,
        "-trimpath",
        *(["-gcflags", gcflags] if gcflags else []),
        "-ldflags",
        f"-s -w {ldflags}",
        "-o",
        str(out) + "/",
        *(f"k8s.io/kubernetes/cmd/{c}" for c in commands),
    ]


def build(version: str = K8S_VERSION, commands: tuple[str, ...] = COMMANDS) -> Path:
    """Return the directory holding the binaries, building the missing ones."""
    target = bin_dir(version)
    todo = missing(version, commands)
    if not todo:
        log(f"kubernetes {version} binaries cached in {target}")
        return target
    if not Path(GO).exists() and not shutil.which("go"):
        raise HarnessError("missing host prerequisite 'go' (1.24 or newer): install Go into /usr/local/go")
    go = GO if Path(GO).exists() else shutil.which("go")
    work = CACHE / "k8s" / version / "module"
    work.mkdir(parents=True, exist_ok=True)
    # Go's own build cache (GOCACHE) keeps a rebuild after a partial failure cheap.
    env = {"GOFLAGS": "-mod=mod -buildvcs=false", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    started = time.monotonic()
    dl = run([go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], cwd=work, env=env, capture=True)
    info = json.loads(dl.stdout)
    if "GoMod" not in info:
        raise HarnessError(f"the Go module proxy does not serve k8s.io/kubernetes@{version}: {info.get('Error')}")
    (work / "go.mod").write_text(module_file(Path(info["GoMod"]).read_text(), version))
    # `go build -mod=mod` resolves the rest of the graph from k8s.io/kubernetes's requirements
    # (MVS) and writes go.sum; no `go mod tidy`, which would also chase test-only modules.
    (work / "go.sum").unlink(missing_ok=True)
    (work / "tools.go").unlink(missing_ok=True)
    minor = version.split(".")[1]
    ldflags = " ".join(
        f"-X k8s.io/component-base/version.{k}={v}"
        for k, v in (
            ("gitVersion", version),
            ("gitMajor", "1"),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("buildDate", "1970-01-01T00:00:00Z"),
        )
    )
    out = work / "out"
    out.mkdir(exist_ok=True)
    # One package at a time on a shared developer machine; CI has the machine to itself.
    jobs = os.environ.get("NANOCLAW_K8S_BUILD_JOBS") or (str(os.cpu_count() or 1) if _ci() else "1")
    log(f"building {', '.join(todo)} {version} (go build -p {jobs}{'' if _ci() else ', nice'}); the first build takes a while")
    _go(build_argv(jobs, ldflags, out, todo), work, env)
    target.mkdir(parents=True, exist_ok=True)
    for c in todo:
        shutil.move(str(out / c), target / c)
    seconds = time.monotonic() - started
    (target.parent / "build-seconds.txt").write_text(f"{seconds:.0f}\n")
    log(f"built kubernetes {version} in {seconds:.0f} s")
    return target


# kube-router's NetworkPolicy controller, run alone (no BGP router, no service proxy) on top of the
# CNI bridge so that stage B's policies are enforced, not just stored. v2.1.0 is the release this
# machine's module proxy serves; its published advisories (GHSA-phqm-jgc3-qf8g: the service proxy,
# GHSA-v5mh-h5hx-7v92: the BGP admin port) are in the parts the harness leaves off.
KUBE_ROUTER_MODULE = "github.com/cloudnativelabs/kube-router/v2"
KUBE_ROUTER_VERSION = os.environ.get("NANOCLAW_KUBE_ROUTER_VERSION", "v2.1.0")


def kube_router_bin(version: str = KUBE_ROUTER_VERSION) -> Path:
    return CACHE / "k8s" / f"kube-router-{version}" / "kube-router"


def build_kube_router(version: str = KUBE_ROUTER_VERSION) -> Path:
    """`go install` of kube-router's command from the module proxy (its go.mod has no replace
    directives; static, no cgo), cached like the Kubernetes binaries."""
    target = kube_router_bin(version)
    if target.exists():
        log(f"kube-router {version} cached at {target}")
        return target
    go = GO if Path(GO).exists() else shutil.which("go")
    if not go:
        raise HarnessError("missing host prerequisite 'go' (1.24 or newer): install Go into /usr/local/go")
    staging = target.parent / "gobin"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {"GOFLAGS": "-mod=mod -buildvcs=false", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOBIN": str(staging)}
    jobs = os.environ.get("NANOCLAW_K8S_BUILD_JOBS") or (str(os.cpu_count() or 1) if _ci() else "1")
    started = time.monotonic()
    log(f"building kube-router {version} (go install -p {jobs})")
    _go(
        [
            "install",
            "-p",
            jobs,
            "-trimpath",
            "-ldflags",
            f"-s -w -X {KUBE_ROUTER_MODULE}/pkg/version.Version={version}",
            f"{KUBE_ROUTER_MODULE}/cmd/kube-router@{version}",
        ],
        target.parent,
        env,
    )
    shutil.move(str(staging / "kube-router"), target)
    shutil.rmtree(staging, ignore_errors=True)
    log(f"built kube-router {version} in {time.monotonic() - started:.0f} s")
    return target
