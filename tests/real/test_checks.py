"""The real upstream NanoClaw on the demo targets after site.yml's first run (stage real:checks).

nanoclaw-demo runs v2 (2.0.64) on rootless Podman, nanoclaw-demo-docker v1 (1.2.53) on Docker,
both from upstream's real source (tests/harness/demo.py). Nothing here is a fixture.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest
import yaml

from ansible_collections.nanoclaw.provision.plugins.module_utils._upstream import ENV_KEYS, conventions

from .conftest import EVIDENCE, HOME, INVENTORY, OUTPUT, ROOT, USER, changed, hosts, playbook, sh, unit_state

HOSTS = hosts()


def generation(target: str) -> str:
    return HOSTS[target]["demo_generation"]


@pytest.fixture(scope="module", params=sorted(HOSTS))
def target(request) -> str:
    return request.param


def test_head_is_the_pin_and_the_generation_was_detected(target, upstream):
    gen = generation(target)
    head = sh(target, f"git -C {ROOT} rev-parse HEAD", user=USER).stdout.strip()
    assert head == upstream[gen]
    # Nothing told the role the generation: it read it from the checkout.
    group_vars = yaml.safe_load((INVENTORY.parent / "group_vars" / "nanoclaw_hosts.yml").read_text())
    assert "nanoclaw_generation" not in group_vars
    assert "nanoclaw_generation" not in HOSTS[target]
    version = json.loads(sh(target, f"cat {ROOT}/package.json").stdout)["version"]
    assert version == upstream["versions"][gen]
    record = json.loads(sh(target, f"cat {HOME}/.local/state/nanoclaw-provision/*/build.json", user=USER).stdout)
    assert record["generation"] == gen
    assert record["commit"] == head
    assert sh(target, f"test -f {ROOT}/dist/index.js && test -d {ROOT}/node_modules/better-sqlite3").returncode == 0
    EVIDENCE.append(
        f"[{target}] HEAD {head} = the {gen} pin, package.json {version}, generation detected {record['generation']};"
        f" install took {record['install_took']}, build took {record['build_took']}"
    )


def test_env_holds_exactly_the_keys_the_pin_reads(target):
    gen = generation(target)
    text = sh(target, f"cat {ROOT}/.env").stdout
    keys = [line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")]
    assert sorted(keys) == ["ASSISTANT_HAS_OWN_NUMBER", "ASSISTANT_NAME"]
    assert set(keys) <= set(ENV_KEYS[gen])
    assert 'ASSISTANT_NAME="Demo"' in text.splitlines()
    assert sh(target, f"stat -c %a {ROOT}/.env").stdout.strip() == "600"
    EVIDENCE.append(f"[{target}] .env keys: {', '.join(sorted(keys))} (NanoClaw {gen} reads {', '.join(ENV_KEYS[gen])})")


def test_unit_is_named_as_upstream_names_it(target):
    gen = generation(target)
    root = sh(target, f"realpath {ROOT}").stdout.strip()
    expected = "nanoclaw.service" if gen == "v1" else f"nanoclaw-v2-{hashlib.sha1(root.encode()).hexdigest()[:8]}.service"
    assert conventions(gen, root, physical=True)["unit"] == expected
    units = sh(target, f"ls {HOME}/.config/systemd/user/").stdout.split()
    assert expected in units
    assert not [u for u in units if u.startswith("nanoclaw") and u.endswith(".service") and u != expected]
    unit = sh(target, f"cat {HOME}/.config/systemd/user/{expected}").stdout
    assert f"WorkingDirectory={root}\n" in unit
    # v2 never reads these (src/config.ts defines them, nothing imports them): not in its unit.
    for key in ("CONTAINER_TIMEOUT", "IDLE_TIMEOUT", "MAX_CONCURRENT_CONTAINERS"):
        assert (f'"{key}=' in unit) == (gen == "v1"), key


def _wait_until_up_for(target: str, unit: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds + 60
    while True:
        state = unit_state(target, unit)
        if float(state["UpSeconds"]) >= seconds or time.monotonic() > deadline:
            return state
        time.sleep(min(5.0, max(1.0, seconds - float(state["UpSeconds"]))))


def test_v2_service_is_up_and_not_restarting_30_s_after_start(upstream):
    target = next(t for t in HOSTS if generation(t) == "v2")
    root = sh(target, f"realpath {ROOT}").stdout.strip()
    unit = conventions("v2", root, physical=True)["unit"]
    state = _wait_until_up_for(target, unit, 30)
    EVIDENCE.append(f"[{target}] {unit} 30 s after start: {state}")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running")
    assert float(state["UpSeconds"]) >= 30
    assert state["NRestarts"] == "0"
    log = sh(target, f"cat {ROOT}/logs/nanoclaw.log", check=False).stdout
    assert "NanoClaw starting" in log
    # ... and its own start-up migration (src/claude-md-compose.ts) changed tracked files under groups/:
    # the checkout is no longer clean, which the second run must accept as runtime data.
    status = sh(target, f"git -C {ROOT} status --porcelain --untracked-files=no", user=USER).stdout.split("\n")
    assert sorted(s.strip() for s in status if s.strip()) == ["D groups/global/CLAUDE.md", "D groups/main/CLAUDE.md"]
    assert sh(target, f"test -f {ROOT}/groups/main/CLAUDE.local.md").returncode == 0
    EVIDENCE.append(f"[{target}] git status after NanoClaw ran: {', '.join(s.strip() for s in status if s.strip())}")


def test_v1_without_a_channel_is_reported_with_upstreams_reason():
    target = next(t for t in HOSTS if generation(t) == "v1")
    unit = "nanoclaw.service"
    state = unit_state(target, unit)
    EVIDENCE.append(f"[{target}] {unit} after site.yml: {state}")
    assert int(state["NRestarts"]) >= 1 or state["ActiveState"] != "active"
    errors = sh(target, f"cat {ROOT}/logs/nanoclaw.log {ROOT}/logs/nanoclaw.error.log", check=False).stdout
    assert "No channels connected" in errors
    run_log = " ".join((OUTPUT / "site-first-run.log").read_text().split())
    match = re.search(r"nanoclaw\.service is not staying up: [^\"]*No channels connected[^\"]*install a channel", run_log)
    assert match, "site.yml's first run did not warn with upstream's reason"
    EVIDENCE.append(f"[{target}] site.yml warned: {match.group(0)[:400]}")


def _summary(out: str, target: str) -> str:
    """The ``Summarise the host`` lines of ``target`` in a run's output, on one line."""
    text = " ".join(out.split())
    start = text.rfind(f"ok: [{target}] => msg: - 'runtime:")
    assert start >= 0, f"no summary of {target} in the output"
    return text[start : start + 1200]


@pytest.mark.parametrize(
    ("name", "gen"),
    [("image.yml", "v2"), ("compat_smoke.yml", "v1")],
    ids=["image.yml on the v2 Podman target", "compat_smoke.yml on the v1 Docker target"],
)
def test_the_image_and_smoke_playbooks_work_from_the_records_and_change_nothing(name, gen, upstream):
    # playbooks/image.yml and playbooks/compat_smoke.yml (the AWX smoke job) apply none of the roles:
    # the runtime host and the install come from the records site.yml left (each role's result.yml).
    target = next(t for t in HOSTS if generation(t) == gen)
    rc, out, took = playbook(name, f"real-checks-{name.replace('.yml', '')}.log", target)
    assert rc == 0, out[-3000:]
    assert changed(out, target) == 0
    summary = _summary(out, target)
    engine = "podman rootless" if gen == "v2" else "docker rootful"
    assert f"'runtime: {engine} for {USER} (uid " in summary
    assert f"'pin: {upstream[gen]} (generation {gen})'" in summary
    if name == "compat_smoke.yml":
        assert re.search(r"'compat: \d+ passed, \d+ failed", summary), summary
        assert "'smoke: agent answered " in summary, summary
    EVIDENCE.append(f"[{target}] {name} alone ({took:.0f} s, changed=0): {summary[:600]}")
