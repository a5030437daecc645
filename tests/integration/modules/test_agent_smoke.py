"""nanoclaw.provision.agent_smoke for real, against the TEST FIXTURE agents (fake agents, not NanoClaw).

Every failure path of the v1 contract and the v2 liveness check, on rootful Docker and on rootless
Podman through the user's docker wrapper; secrets never in argv, results or -vvv output.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import AGENT, DOCKER, PODMAN, Engine, record, run_module

pytestmark = pytest.mark.usefixtures("engines_ready", "tun_usable")
ENGINES = [pytest.param(DOCKER, id="docker"), pytest.param(PODMAN, id="podman")]


def smoke_args(engine: Engine, mode: str, **args) -> dict:
    # Podman 4.3 rejects host-gateway (see test_podman_rejects_host_gateway); NanoClaw's other flags stay.
    if engine is PODMAN:
        args.setdefault("host_gateway", False)
    return engine.module_args(image=f"{AGENT}:{mode}", **args)


@pytest.mark.parametrize("engine", ENGINES)
def test_v1_contract_and_every_failure_path(tmp_path, engine):
    calls = {
        "ok": smoke_args(engine, "ok", input={"prompt": "ping from the test", "isMain": True}),
        "no-markers": smoke_args(engine, "no-markers"),
        "bad-json": smoke_args(engine, "bad-json"),
        "exit-1": smoke_args(engine, "exit-1"),
        "status-error": smoke_args(engine, "status-error"),
        "several-outputs": smoke_args(engine, "several-outputs"),
        "several-outputs-fail": smoke_args(engine, "several-outputs", several_outputs="fail"),
        "hang": smoke_args(engine, "hang", timeout=6, name=f"nanoclaw-smoke-hang-{uuid.uuid4().hex[:6]}"),
        "missing": smoke_args(engine, "does-not-exist"),
    }
    play = run_module(tmp_path, "agent_smoke", list(calls.values()))
    results = dict(zip(calls, play.results, strict=True))

    ok = results["ok"]
    assert not ok.get("failed"), ok["msg"]
    assert ok["changed"] is False
    assert ok["failure"] is None
    assert ok["exit_code"] == 0
    assert ok["outputs_count"] == 1
    assert ok["output"]["status"] == "success"
    assert ok["output"]["result"] == "fixture echo: ping from the test"
    report = ok["output"]["fixtureReport"]
    # isMain: the project mount is there, read-only; every other standard mount too.
    assert report["mounts"] == sorted(["/workspace/group", "/workspace/project", "/workspace/ipc/input", "/home/node/.claude", "/app/src"])
    assert report["projectWritable"] is False
    assert report["inputKeys"] == ["chatJid", "groupFolder", "isMain", "prompt"]
    timings = ok["timings"]
    assert 0 < timings["spawn_to_first_byte"] <= timings["spawn_to_result"] <= timings["total"]
    assert ok["removed"] is True
    record(f"agent_smoke-v1-{engine.key}.json", json.dumps(timings) + "\n")

    expectations = {
        "no-markers": ("no_markers", "no output between"),
        "bad-json": ("invalid_json", "invalid JSON"),
        "exit-1": ("exit_code", "exited with code 1"),
        "status-error": ("status_error", "fixture agent: simulated failure"),
        "several-outputs-fail": ("several_outputs", "2 outputs"),
        "hang": ("timeout", "killed and removed"),
        "missing": ("image_missing", "is not present"),
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

    several = results["several-outputs"]
    assert not several.get("failed"), several["msg"]
    assert several["outputs_count"] == 2
    assert several["output"]["result"].startswith("fixture echo:"), "the last output is the result"
    assert "the last one is the result" in several["msg"]
    assert engine.names("name=nanoclaw-smoke-") == []


@pytest.mark.parametrize("engine", ENGINES)
def test_v2_heartbeat_stop_and_no_leftover(tmp_path, engine):
    slug_ok, slug_hang = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    play = run_module(
        tmp_path,
        "agent_smoke",
        [
            smoke_args(engine, "ok", contract="v2", install_slug=slug_ok, container_config={"assistantName": "Fixture"}),
            smoke_args(engine, "hang", contract="v2", install_slug=slug_hang, heartbeat_timeout=5),
        ],
    )
    ok, hang = play.results
    assert not ok.get("failed"), ok["msg"]
    assert ok["heartbeat"] is True
    assert ok["leftover_containers"] == []
    assert ok["install_slug"] == slug_ok
    assert 0 < ok["timings"]["spawn_to_result"] <= ok["timings"]["total"]
    record(f"agent_smoke-v2-{engine.key}.json", json.dumps(ok["timings"]) + "\n")
    assert hang["failed"] is True
    assert hang["failure"] == "no_heartbeat"
    assert hang["heartbeat"] is False
    for slug in (slug_ok, slug_hang):
        assert engine.names(f"label=nanoclaw-install={slug}") == []


def test_v2_needs_container_json(tmp_path):
    """A v2 agent without agent/container.json exits; the module reports it as exited_early."""
    session = tmp_path / "session"
    (session / "agent").mkdir(parents=True)
    (session / "agent" / "container.json").write_text("{not json")
    play = run_module(tmp_path, "agent_smoke", [smoke_args(DOCKER, "ok", contract="v2", session_dir=str(session), heartbeat_timeout=20)])
    result = play.result
    assert result["failure"] == "exited_early", result["msg"]
    assert "container.json" in result["msg"]


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
