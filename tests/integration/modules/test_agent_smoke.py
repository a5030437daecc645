"""nanoclaw.provision.agent_smoke for real, against the TEST FIXTURE agents (fake agents, not NanoClaw).

Every failure path of the v1 contract and the v2 liveness check, on rootful Docker and on rootless
Podman through the user's docker wrapper; secrets never in argv, results or -vvv output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import AGENT, DOCKER, PODMAN, REPO, Engine, record

from tests.harness.module_play import run_module

pytestmark = pytest.mark.usefixtures("engines_ready", "tun_usable")
ENGINES = [pytest.param(DOCKER, id="docker"), pytest.param(PODMAN, id="podman")]
PROJECT = REPO / "tests" / "fixtures" / "agent" / "project"


def smoke_args(engine: Engine, mode: str, **args) -> dict:
    # Podman 4.3 rejects host-gateway (see test_podman_rejects_host_gateway); NanoClaw's other flags stay.
    if engine is PODMAN:
        args.setdefault("host_gateway", False)
    return engine.module_args(image=f"{AGENT}:{mode}", **args)


@pytest.fixture(scope="module")
def fixture_project():
    """A copy of the FIXTURE checkout (container/agent-runner/src) every engine's user can read, and one without sources."""
    root = Path(tempfile.mkdtemp(prefix="nanoclaw-smoke-project-"))
    os.chmod(root, 0o755)
    shutil.copytree(PROJECT, root / "ok")
    (root / "empty" / "container" / "agent-runner" / "src").mkdir(parents=True)
    for path in root.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_v1_contract_and_every_failure_path(tmp_path, engine, fixture_project):
    calls = {
        "ok": smoke_args(engine, "ok", input={"prompt": "ping from the test", "isMain": True}, project_dir=str(fixture_project / "ok")),
        "image-src": smoke_args(engine, "ok"),
        "no-sources": smoke_args(engine, "ok", project_dir=str(fixture_project / "empty")),
        "no-close": smoke_args(engine, "ok", env={"NANOCLAW_FIXTURE_IGNORE_CLOSE": "1"}, close_timeout=3, timeout=120),
        "no-markers": smoke_args(engine, "no-markers"),
        "bad-json": smoke_args(engine, "bad-json"),
        "exit-1": smoke_args(engine, "exit-1"),
        "status-error": smoke_args(engine, "status-error"),
        "several-outputs": smoke_args(engine, "several-outputs"),
        "several-outputs-fail": smoke_args(engine, "several-outputs", several_outputs="fail"),
        "hang": smoke_args(engine, "hang", timeout=6, name=f"nanoclaw-smoke-hang-{uuid.uuid4().hex[:6]}"),
        "missing": smoke_args(engine, "does-not-exist"),
        "not-a-checkout": smoke_args(engine, "ok", project_dir=str(fixture_project)),
    }
    play = run_module(tmp_path, "agent_smoke", list(calls.values()))
    results = dict(zip(calls, play.results, strict=True))

    ok = results["ok"]
    assert not ok.get("failed"), ok["msg"]
    assert ok["changed"] is False
    assert ok["failure"] is None
    assert ok["exit_code"] == 0
    # The real runner's outputs: the result, then a session update without one; then it waits for
    # input/_close, which the module wrote, and ends.
    assert ok["outputs_count"] == 2
    assert ok["closed"] is True
    assert "1 of them session updates" in ok["msg"]
    assert "after input/_close" in ok["msg"]
    assert ok["output"]["status"] == "success"
    assert ok["output"]["result"] == "fixture echo: ping from the test"
    report = ok["output"]["fixtureReport"]
    # isMain: the project mount is there, read-only, its .env hidden by /dev/null and its store/
    # writable; every other standard mount too, the runner source a copy of the checkout's.
    assert report["mounts"] == sorted(["/workspace/group", "/workspace/project", "/workspace/ipc/input", "/home/node/.claude", "/app/src"])
    assert report["projectWritable"] is False
    assert report["projectEnv"] == ""
    assert report["projectStoreWritable"] is True
    assert report["runnerSources"] == ["index.ts"]
    assert ok["runner_source"] == "mounted"
    # v1.2.53's input carries no secrets.
    assert report["inputKeys"] == ["chatJid", "groupFolder", "isMain", "prompt"]
    timings = ok["timings"]
    assert 0 < timings["spawn_to_first_byte"] <= timings["spawn_to_result"] <= timings["total"]
    assert 0 <= timings["result_to_exit"] < 10
    assert ok["removed"] is True
    record(f"agent_smoke-v1-{engine.key}.json", json.dumps(timings) + "\n")

    # Without project_dir the image's own /app/src is compiled (upstream's v1 image carries it).
    image_src = results["image-src"]
    assert not image_src.get("failed"), image_src["msg"]
    assert image_src["runner_source"] == "image"
    # An empty runner source: the image's compile step fails before reading stdin (no markers, exit 2).
    no_sources = results["no-sources"]
    assert no_sources["failure"] == "no_markers", no_sources["msg"]
    assert no_sources["exit_code"] == 2
    assert "No inputs were found" in no_sources["msg"]

    expectations = {
        "no-close": ("not_closed", "did not end within 3 s of input/_close"),
        "no-markers": ("no_markers", "no output between"),
        "bad-json": ("invalid_json", "invalid JSON"),
        "exit-1": ("exit_code", "exited with code 1"),
        "status-error": ("status_error", "fixture agent: simulated failure"),
        "several-outputs-fail": ("several_outputs", "2 outputs"),
        "hang": ("timeout", "killed and removed"),
        "missing": ("image_missing", "is not present"),
        "not-a-checkout": ("bad_input", "must be a NanoClaw checkout"),
    }
    for key, (failure, words) in expectations.items():
        result = results[key]
        assert result["failed"] is True, key
        assert result["failure"] == failure, (key, result["msg"])
        assert words in result["msg"], (key, result["msg"])
    assert results["status-error"]["agent_error"] == "fixture agent: simulated failure"
    assert results["exit-1"]["exit_code"] == 1
    assert results["hang"]["exit_code"] is None
    assert results["hang"]["removed"] is True
    assert 6 <= results["hang"]["timings"]["total"] < 60
    assert engine.names(f"name={calls['hang']['name']}") == []
    no_close = results["no-close"]
    assert no_close["closed"] is True
    assert no_close["removed"] is True
    assert no_close["timings"]["total"] < 60, "the close timeout, not the overall one, ended it"

    several = results["several-outputs"]
    assert not several.get("failed"), several["msg"]
    assert several["outputs_count"] == 3
    assert several["output"]["result"].startswith("fixture echo:"), "the last result is the result"
    assert "the last one is the result" in several["msg"]
    assert engine.names("name=nanoclaw-smoke-") == []


@pytest.mark.parametrize("engine", ENGINES)
def test_v2_session_message_heartbeat_stop_and_no_leftover(tmp_path, engine, fixture_project):
    slugs = {key: uuid.uuid4().hex[:8] for key in ("ok", "hang", "no-src", "image-src")}
    play = run_module(
        tmp_path,
        "agent_smoke",
        [
            smoke_args(engine, "ok", contract="v2", install_slug=slugs["ok"], project_dir=str(fixture_project / "ok")),
            smoke_args(engine, "hang", contract="v2", install_slug=slugs["hang"], heartbeat_timeout=5),
            smoke_args(engine, "ok", contract="v2", install_slug=slugs["no-src"], project_dir=str(fixture_project / "empty")),
            smoke_args(engine, "ok", contract="v2", install_slug=slugs["image-src"]),
        ],
    )
    ok, hang, no_src, image_src = play.results
    assert not ok.get("failed"), ok["msg"]
    # The runner read the message the host queued in inbound.db, acknowledged it in outbound.db and
    # touched its heartbeat while it worked; the mock provider's reply is not delivered (unwrapped).
    assert ok["acknowledged"] == "completed"
    assert ok["heartbeat"] is True
    assert ok["replies"] == []
    assert ok["runner_source"] == "mounted"
    assert ok["leftover_containers"] == []
    assert ok["install_slug"] == slugs["ok"]
    assert 0 < ok["timings"]["spawn_to_heartbeat"] <= ok["timings"]["total"]
    assert 0 < ok["timings"]["spawn_to_result"] <= ok["timings"]["total"]
    record(f"agent_smoke-v2-{engine.key}.json", json.dumps(ok["timings"]) + "\n")
    assert hang["failed"] is True
    assert hang["failure"] == "no_heartbeat"
    assert hang["heartbeat"] is False
    assert hang["acknowledged"] is None
    # /app/src mounted read-only from a checkout without index.ts: bun cannot start the runner.
    assert no_src["failure"] == "exited_early", no_src["msg"]
    assert "Module not found" in no_src["msg"]
    assert not image_src.get("failed"), image_src["msg"]
    assert image_src["runner_source"] == "image"
    for slug in slugs.values():
        assert engine.names(f"label=nanoclaw-install={slug}") == []


def test_v2_needs_the_session_dbs_the_host_prepares(tmp_path):
    """A bare session directory (no DBs from the host): the runner stops at its first query and exits (exited_early)."""
    session = tmp_path / "session"
    session.mkdir()
    play = run_module(tmp_path, "agent_smoke", [smoke_args(DOCKER, "ok", contract="v2", session_dir=str(session), heartbeat_timeout=20)])
    result = play.result
    assert result["failure"] == "exited_early", result["msg"]
    # poll-loop.ts clears stale acks in outbound.db before it first reads inbound.db: the real runner stops there.
    assert "no such table: processing_ack" in result["msg"]


WRAPPER = """#!/bin/sh
# TEST: a docker wrapper as nanoclaw.provision's nanoclaw role installs one (first on the service's PATH):
# `docker run` gets the hardening flags, everything goes on to the real CLI; each call is logged.
echo "$*" >> {log}
if [ "${{1:-}}" = run ]; then
  shift
  exec {real} run --read-only --tmpfs /tmp:mode=1777 --cap-drop=ALL --security-opt=no-new-privileges "$@"
fi
exec {real} "$@"
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_through_the_service_units_docker_wrapper_with_hardening(tmp_path, engine, fixture_project):
    """service_unit: the CLI runs with the unit's Environment= (its PATH puts the wrapper first), as NanoClaw does."""
    wrapdir = Path(tempfile.mkdtemp(prefix="nanoclaw-smoke-wrapper-"))
    try:
        os.chmod(wrapdir, 0o755)
        log = wrapdir / "calls.log"
        log.touch()
        os.chmod(log, 0o666)
        real = "/usr/bin/podman" if engine is PODMAN else shutil.which("docker")
        (wrapdir / "docker").write_text(WRAPPER.format(log=log, real=real))
        os.chmod(wrapdir / "docker", 0o755)
        # A user unit lives in the service user's home and is read as that user: it must be able to.
        unit = wrapdir / "nanoclaw-v2-test.service"
        unit.write_text(
            "[Unit]\nDescription=test\n\n[Service]\nType=simple\n"
            f'Environment="PATH={wrapdir}:/usr/local/bin:/usr/bin:/bin"\n'
            'Environment="CONTAINER_IMAGE=nanoclaw-agent:latest" NANOCLAW_NO_DIAGNOSTICS=1\n'
        )
        os.chmod(unit, 0o644)
        project = str(fixture_project / "ok")
        play = run_module(
            tmp_path,
            "agent_smoke",
            [
                smoke_args(engine, "ok", service_unit=str(unit), project_dir=project),
                smoke_args(engine, "ok", contract="v2", service_unit=str(unit), project_dir=project),
            ],
        )
        v1, v2 = play.results
        calls = log.read_text().splitlines()
    finally:
        shutil.rmtree(wrapdir, ignore_errors=True)
    assert not v1.get("failed"), v1["msg"]
    assert not v2.get("failed"), v2["msg"]
    for result in (v1, v2):
        assert result["executable"] == str(wrapdir / "docker")
    # The agent ran under --read-only with /tmp a tmpfs: the fixture wrote only where the real runner writes.
    assert v1["output"]["fixtureReport"]["rootfsWritable"] is False
    assert v1["closed"] is True
    assert v2["acknowledged"] == "completed"
    assert sum(1 for c in calls if c.startswith("run ")) == 2, calls
    record(f"agent_smoke-wrapper-{engine.key}.json", json.dumps({"v1": v1["timings"], "v2": v2["timings"]}) + "\n")


def test_podman_rejects_host_gateway(tmp_path):
    """NanoClaw's --add-host=host.docker.internal:host-gateway fails on Podman 4.3: reported as the engine's error."""
    play = run_module(tmp_path, "agent_smoke", [PODMAN.module_args(image=f"{AGENT}:ok")])
    result = play.result
    assert result["failed"] is True
    assert result["failure"] == "engine_error"
    assert result["exit_code"] == 125
    assert "host-gateway" in result["msg"]


def test_check_mode_does_not_start_the_agent(tmp_path):
    play = run_module(tmp_path, "agent_smoke", [smoke_args(DOCKER, "hang", timeout=600)], check=True)
    result = play.result
    assert not result.get("failed"), result["msg"]
    assert "agent not started" in result["msg"]
    assert "timings" not in result


class ProcScanner(threading.Thread):
    """Watches every process's argv and environment on the host while a run is in progress."""

    def __init__(self, needle: bytes) -> None:
        super().__init__(daemon=True)
        self.needle = needle
        self.hits: list[str] = []
        self.scans = 0
        self.pids_seen: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == os.getpid():
                    continue
                self.pids_seen.add(pid)
                for name in ("cmdline", "environ"):
                    try:
                        data = Path(f"/proc/{pid}/{name}").read_bytes()
                    except OSError:
                        continue
                    if self.needle in data:
                        self.hits.append(f"{pid}/{name}: {data[:200]!r}")
            self.scans += 1
            time.sleep(0.01)


@pytest.mark.parametrize("engine", ENGINES)
def test_secret_never_in_argv_result_or_verbose_log(tmp_path, engine):
    secret = f"sk-fixture-{uuid.uuid4().hex}"
    scanner = ProcScanner(secret.encode())
    scanner.start()
    try:
        play = run_module(
            tmp_path,
            "agent_smoke",
            [smoke_args(engine, "ok", secrets={"ANTHROPIC_API_KEY": secret}, env={"NANOCLAW_SMOKE": "visible"})],
            verbosity=3,
        )
    finally:
        scanner.stop.set()
        scanner.join()
    result = play.result
    assert not result.get("failed"), result["msg"]
    # The secret reached the agent, on stdin only.
    report = result["output"]["fixtureReport"]
    assert report["secretKeys"] == ["ANTHROPIC_API_KEY"]
    assert report["secretExposure"] == {"argv": False, "environ": False}
    # Never in any host process's argv or environment during the run (docker CLI, shims, runtime, agent).
    assert scanner.scans > 10
    assert scanner.hits == []
    # Never in the result nor anywhere in the -vvv log.
    assert "<localhost> EXEC" in play.log, "the log is really verbose"
    assert secret not in play.log
    assert secret not in json.dumps(result)
    # -vvv prints the module arguments: the secrets option is there, masked.
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in play.log
