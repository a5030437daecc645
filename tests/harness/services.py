"""Containers and daemons the harness starts, and their clean-up."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from .common import STATE, HarnessError, log, run

PIDFILES = STATE / "pids"
# Daemons this process started: a run stops what it started, and nothing else.
_STARTED: list[str] = []


def remove_container(name: str) -> None:
    # -v: with its anonymous volumes (a demo target's engine store, see ensure_demo_target).
    run(["podman", "rm", "-f", "-v", "-t", "0", name], check=False, capture=True, quiet=True)


def remove_engine_volumes(scenario: str) -> None:
    """The named volumes a scenario's targets keep an engine's store on (``SCENARIO-*-engine``, see
    molecule/agent_image_docker/molecule.yml): every run starts from an empty store."""
    proc = run(["podman", "volume", "ls", "--format", "{{.Name}}"], check=False, capture=True, quiet=True)
    for name in proc.stdout.split():
        if name.startswith(f"{scenario}-") and name.endswith("-engine"):
            run(["podman", "volume", "rm", "-f", name], check=False, capture=True, quiet=True)


def sweep_stale(scenarios: list[str]) -> None:
    """Remove containers an interrupted run of these scenarios left behind (molecule targets, test doubles)."""
    proc = run(
        ["podman", "ps", "-a", "--filter", "label=owner=molecule", "--format", "{{.Names}}"],
        check=False,
        capture=True,
        quiet=True,
    )
    for name in proc.stdout.split():
        if any(name.startswith(f"{scenario}-") for scenario in scenarios):
            log(f"removing stale molecule container {name}")
            remove_container(name)
    if "preflight" not in scenarios:
        return  # the test doubles below belong to the preflight scenario's verify (it may be running now)
    proc = run(["podman", "ps", "-a", "--format", "{{.Names}}"], check=False, capture=True, quiet=True)
    for name in proc.stdout.split():
        if name.startswith("nanoclaw-preflight-nosystemd-"):
            remove_container(name)


# Bumped when the way the demo target is started changes: a running target of
# another recipe is replaced (its data is disposable by design).
DEMO_RECIPE = "5-debian13-host-network-engine-volume"


def ensure_demo_target(
    name: str, image: str, label: str = "nanoclaw.provision=demo", host_network: bool = True, engine_stores: tuple[str, ...] = ()
) -> bool:
    """Start (or keep) a disposable target host: a systemd container of the target image.
    Returns True when it was started now, False when a running one was kept.

    The demo target shares this machine's network namespace (as the agent_image scenarios'
    targets do) so it reaches the harness's loopback registries under the address their
    certificate names; rootless Podman inside it creates no interfaces or firewall rules
    there. The EE target (sshd) keeps its own network (``host_network=False``).

    ``engine_stores`` (e.g. /var/lib/docker) get an anonymous volume each, on this machine's own
    filesystem, as an engine's store is on a real host: on the target's overlay root dockerd finds
    no usable overlay2 and falls back to vfs, which copies the whole image for every container
    (33 s for one `docker run --rm IMAGE true` at load 10). The volumes go with the target.
    """
    recipe = f"{DEMO_RECIPE}-{'host' if host_network else 'bridge'}"
    state = run(
        ["podman", "inspect", name, "--format", '{{.State.Running}} {{ index .Config.Labels "nanoclaw.provision.demo-recipe" }}'],
        check=False,
        capture=True,
        quiet=True,
    )
    if state.returncode == 0 and state.stdout.split() == ["true", recipe]:
        log(f"demo target {name} is running")
        return False
    remove_container(name)
    run(
        [
            "podman",
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            "--privileged",
            *(["--network", "host"] if host_network else []),
            *(arg for store in engine_stores for arg in ("--volume", store)),
            "--systemd=always",
            "--label",
            label,
            "--label",
            f"nanoclaw.provision.demo-recipe={recipe}",
            image,
            "/sbin/init",
        ],
        capture=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = run(["podman", "exec", name, "systemctl", "is-system-running"], check=False, capture=True, quiet=True)
        if probe.stdout.strip() in ("running", "degraded"):
            return True
        time.sleep(1)
    raise HarnessError(f"demo target {name} did not boot systemd within 60 s")


def _pidfile(name: str) -> Path:
    return PIDFILES / f"{name}.pid"


PROBE_TIMEOUT = 20.0  # seconds one readiness probe of a daemon may take


def start_daemon(name: str, argv: list[str], ready: list[str], log_path: Path, timeout: float = 60) -> None:
    """Start a background daemon once (pidfile), and wait until ``ready`` succeeds."""
    import subprocess

    PIDFILES.mkdir(parents=True, exist_ok=True)
    pidfile = _pidfile(name)
    if pidfile.exists():
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, 0)
            log(f"{name} already running (pid {pid})")
            return
        except ProcessLookupError:
            pidfile.unlink()
    # Each probe is bounded: a probe that hangs (a connection nobody answers) must not hold the run.
    if run(ready, check=False, capture=True, quiet=True, timeout=PROBE_TIMEOUT).returncode == 0:
        # Another checkout's run (a worktree, a concurrent ./run) already serves it:
        # use it, and leave stopping it to whoever started it.
        log(f"{name} already answering (started elsewhere); using it")
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    _STARTED.append(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pidfile.unlink(missing_ok=True)
            raise HarnessError(f"{name} exited with {proc.returncode}; see {log_path}")
        if run(ready, check=False, capture=True, quiet=True, timeout=PROBE_TIMEOUT).returncode == 0:
            log(f"{name} started (pid {proc.pid})")
            return
        time.sleep(0.5)
    raise HarnessError(f"{name} not ready after {timeout:.0f} s; see {log_path}")


def _reap(pid: int) -> None:
    """A daemon this process started stays a zombie (kill(pid, 0) succeeds) until it is waited for."""
    with contextlib.suppress(ChildProcessError):  # not our child: its own parent reaps it
        os.waitpid(pid, os.WNOHANG)


def running(name: str) -> bool:
    """Whether a daemon of this checkout (pidfile) is alive."""
    pidfile = _pidfile(name)
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def stop_daemon(name: str) -> None:
    pidfile = _pidfile(name)
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _reap(pid)
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)
    log(f"stopped {name}")


def stop_started() -> None:
    """Stop the daemons this run started."""
    while _STARTED:
        stop_daemon(_STARTED.pop())


def alive() -> set[str]:
    """The daemons of this checkout (pidfiles) that are running now."""
    return {p.stem for p in PIDFILES.glob("*.pid")} if PIDFILES.exists() else set()


def stop_new(before: set[str]) -> None:
    """Stop the daemons of this checkout that were not running at ``before`` (``alive()`` then):
    what a run started, in whichever of its processes (a stage's lane, a molecule prepare)."""
    for name in sorted(alive() - before):
        stop_daemon(name)


def stop_all() -> None:
    """Stop every daemon this checkout's runs left running (./run down)."""
    if PIDFILES.exists():
        for pidfile in PIDFILES.glob("*.pid"):
            stop_daemon(pidfile.stem)
