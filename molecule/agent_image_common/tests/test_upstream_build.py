"""Upstream's real container/ at both pins, built by the agent_image role on the scenario's engine.

The targets build the real Dockerfiles (the bundle of tests: v1.2.53 on Debian 12, v2.0.64 on
Debian 13; the base through the harness's node:22-slim mirror stand-in). On a network that reaches
everything the build passes; on the test machines it stops at the first download it cannot make,
and the role must fail naming that URL and the variables that fix it, and tag nothing. How far
each build got goes to tests/output/agent_image_upstream_builds-<scenario>.json (docs/AGENT_IMAGE.md
has the table).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest
from conftest import ENGINE, REPO, SCENARIO, TARGETS, USER, Target, converge, host_output, recap

from tests.harness import upstream as harness_upstream

CHECKOUT = f"/home/{USER}/upstream-nanoclaw"
OUTPUT = REPO / "tests" / "output" / f"agent_image_upstream_builds-{SCENARIO}.json"
# Limits of this test machine, not of the role or of upstream, met before any download fails.
LIMITS = {
    "/sys/fs/docker/buildkit/": (
        "missing host capability: Docker BuildKit cannot start RUN steps in containers on this cgroup v1 host"
        " (runc cannot mount the step's cgroup)"
    ),
}
FIXES = ("nanoclaw_agent_image_build_args", "nanoclaw_agent_image_mode: pull", "nanoclaw_agent_image_dockerfile_syntax")


# One target builds both pins, one after the other (Debian 13: Podman's overlay storage and Docker
# 26 with buildx; Debian 12's rootless vfs store copies every layer and took 20 min for v1's apt).
BUILDER = next((name for name in TARGETS if "debian13" in name), None)
PINS = ["v2", "v1"]


def _bundle() -> str:
    source, is_bundle = harness_upstream.locate()
    if not is_bundle:
        pytest.skip(f"NANOCLAW_UPSTREAM is {source}, not a bundle: this test copies a bundle into the targets")
    return source


def _clone(target: Target, pin: str) -> None:
    """The bundle's branch ``pin``, cloned as the service user."""
    subprocess.run(["podman", "cp", _bundle(), f"{target.name}:/tmp/nanoclaw-upstream.bundle"], check=True, capture_output=True)
    target.host.check_output(
        f"chmod 0644 /tmp/nanoclaw-upstream.bundle && rm -rf {CHECKOUT} && "
        f"runuser -u {USER} -- git clone -q -b {pin} /tmp/nanoclaw-upstream.bundle {CHECKOUT}"
    )


def _upstream_tags(target: Target, pin: str) -> dict[str, str]:
    """Image IDs under upstream's name for the upstream checkout."""
    physical = target.host.check_output(f"realpath {CHECKOUT}")
    name = "nanoclaw-agent" if pin == "v1" else "nanoclaw-agent-v2-" + hashlib.sha1(physical.encode()).hexdigest()[:8]
    local = ("localhost/" if ENGINE == "podman" else "") + name
    listed = target.engine(f"images --format '{{{{.Repository}}}}:{{{{.Tag}}}} {{{{.ID}}}}' {local}")
    return dict(line.split() for line in listed.stdout.splitlines() if line.strip())


@pytest.fixture(scope="module", params=PINS)
def upstream_build(request):
    if BUILDER is None:
        pytest.skip("the scenario has no Debian 13 target")
    try:
        _bundle()
    except harness_upstream.HarnessError as exc:
        pytest.skip(f"no upstream NanoClaw on this machine: {exc}")
    pin = request.param
    target = Target(BUILDER)
    _clone(target, pin)
    before = _upstream_tags(target, pin)
    extra = {
        "nanoclaw_agent_image_project_dir": CHECKOUT,
        "nanoclaw_agent_image_generation": pin[1],
        "nanoclaw_agent_image_push": False,
        "nanoclaw_agent_image_docker_buildkit": True,
        # The frontend image of upstream's `# syntax=` line is not reachable here (Docker only).
        "nanoclaw_agent_image_dockerfile_syntax": "builtin",
    }
    proc = converge(BUILDER, extra)
    return target, pin, proc, before, _upstream_tags(target, pin)


def _step(output: str) -> str:
    """The build step that failed, as the builder printed it."""
    found = re.findall(r"(?:STEP \d+/\d+: RUN [^\n]{0,80}|#\d+ \[[^\]]*\d+/\d+\] RUN [^\n]{0,80}|Step \d+/\d+ : RUN [^\n]{0,80})", output)
    return found[-1] if found else ""


def test_upstream_build_passes_or_names_the_download_that_failed(upstream_build):
    target, pin, proc, before, after = upstream_build
    out = host_output(proc, target.name)
    row = {"engine": ENGINE, "pin": pin, "target": target.name, "seconds": round(proc.seconds, 1)}
    limit = None
    if recap(proc, target.name)["failed"] == 0:
        row["result"] = "built"
    else:
        assert "Nothing was tagged" in out, out[-3000:]
        # Nothing was tagged under upstream's name for this checkout.
        assert after == before
        row["step"] = _step(proc.stdout)
        match = re.search(r"failed: it could not download (\S+) \((\w+): (.*?)\)\. Fix: (.*?) Nothing was tagged", out)
        # The host's own output as well as the play's: the callback folds long lines of the latter.
        limit = next((why for needle, why in LIMITS.items() if needle in proc.stdout or needle in out), None)
        if match:
            row.update(result="stopped at a download", url=match.group(1), kind=match.group(2), line=match.group(3)[:200])
            assert any(fix in match.group(4) for fix in FIXES), match.group(4)
        elif limit:
            row.update(result="stopped by this machine", limit=limit)
        else:
            pytest.fail(f"the build failed neither at a download nor at a known limit of this machine:\n{out[-3000:]}")
    data = json.loads(OUTPUT.read_text()) if OUTPUT.exists() else {}
    data[f"{ENGINE}-{row['pin']}"] = row
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if limit and "url" not in row:
        pytest.skip(f"{ENGINE} {row['pin']}: {limit}")
