"""Pull-only mode of nanoclaw.provision.agent_image against the harness's TLS + htpasswd registry.

Runs after test_agent_image.py (file order): the targets hold the image the
converge built. A prebuilt image of its own (the mirror's node:22-slim stand-in
with one label, built and pushed from the test machine) is pulled by digest into
each target's engine and tagged with upstream's local name for the install; then
a rerun, check mode, a wrong digest, a registry that is down and refused input
must each change nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import (
    ENGINE,
    INFO,
    PUSH,
    SCENARIO,
    TARGETS,
    Target,
    all_output,
    converge,
    harness_registry,
    host_output,
    recap,
    record_timing,
    registry_manifest,
    task_results,
)

PASSWORD = Path(INFO["push"]["password_file"]).read_text().strip()
PULL_REPOSITORY = f"ci/pull-fixture/{SCENARIO.replace('_', '-')}"
DOWN = "127.0.0.1:5449"  # nothing listens here: a registry that is down
ABSENT_DIGEST = "sha256:" + "0123456789abcdef" * 4


def _build_and_push() -> tuple[str, str]:
    """A small prebuilt image in the push registry; returns (reference by digest, config digest)."""
    local = f"localhost/nanoclaw-pull-fixture:{SCENARIO}"
    with tempfile.TemporaryDirectory(prefix="nanoclaw-pull-fixture-") as tmp:
        ctx = Path(tmp)
        certs = ctx / "certs"
        certs.mkdir()
        shutil.copy(INFO["ca_file"], certs / "ca.crt")
        (ctx / "Containerfile").write_text(
            "# FIXTURE: a prebuilt 'agent image' for the pull-only tests: the mirror's node:22-slim stand-in + a label\n"
            f"FROM {INFO['mirror']['address']}/library/node:22-slim\n"
            f'LABEL io.nanoclaw.provision.pull-fixture="{SCENARIO}"\n'
        )
        subprocess.run(
            ["podman", "build", "-q", "--cert-dir", str(certs), "--network", "none", "-t", local, str(ctx)],
            capture_output=True,
            text=True,
            check=True,
        )
    try:
        digest = harness_registry.push_by_digest(local, PULL_REPOSITORY, "agent")
    finally:
        subprocess.run(["podman", "rmi", local], capture_output=True, check=False)
    _status, by_tag, manifest = registry_manifest(PULL_REPOSITORY, "agent")
    assert by_tag == digest
    return f"{PUSH.address}/{PULL_REPOSITORY}@{digest}", manifest["config"]["digest"]


def _pull_vars(ref: str, **more) -> dict:
    return {"nanoclaw_agent_image_mode": "pull", "nanoclaw_agent_image_pull_ref": ref, "nanoclaw_agent_image_push": False, **more}


def _latest(target: Target) -> str:
    return target.image_id(f"{target.local}:latest")


def _ca_dirs(target: Target) -> list[str]:
    base = "/etc/containers/certs.d" if ENGINE == "podman" else "/etc/docker/certs.d"
    return sorted(target.host.check_output(f"ls -1 {base}").split())


@pytest.fixture(scope="module")
def pull_runs():
    ref, config_digest = _build_and_push()
    built = {name: _latest(Target(name)) for name in TARGETS}
    check = converge(TARGETS, _pull_vars(ref), check=True)
    after_check = {name: _latest(Target(name)) for name in TARGETS}
    first = converge(TARGETS, _pull_vars(ref))
    record_timing("pull-only first pull (all targets in parallel)", first.seconds)
    again = converge(TARGETS, _pull_vars(ref))
    record_timing("pull-only rerun (all targets in parallel)", again.seconds)
    check_again = converge(TARGETS, _pull_vars(ref), check=True)
    return {
        "ref": ref,
        "config_digest": config_digest,
        "built": built,
        "check": check,
        "after_check": after_check,
        "first": first,
        "again": again,
        "check_again": check_again,
    }


def test_check_mode_reports_the_pull_and_changes_nothing(target, pull_runs):
    check = pull_runs["check"]
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap(check, target.name)["changed"] >= 1
    assert f"would pull {pull_runs['ref']} and tag it {target.local}:latest" in host_output(check, target.name)
    assert pull_runs["after_check"][target.name] == pull_runs["built"][target.name]


def test_pull_tags_upstreams_local_name_with_the_digests_image(target, pull_runs):
    first = pull_runs["first"]
    assert first.returncode == 0, first.stdout[-3000:]
    assert recap(first, target.name)["changed"] >= 1
    assert f"pulled from {pull_runs['ref']}" in host_output(first, target.name)
    digest = pull_runs["ref"].split("@")[1]
    image = target.inspect(f"{target.local}:latest")
    assert _latest(target) == pull_runs["config_digest"]
    assert any(d.endswith("@" + digest) for d in image["RepoDigests"]), image["RepoDigests"]
    assert image["Config"]["Labels"]["io.nanoclaw.provision.pull-fixture"] == SCENARIO
    # Nothing was built: the image the converge built is still there under its commit tag, untouched.
    assert target.image_id(f"{target.local}:{target.commit[:12]}") == pull_runs["built"][target.name]
    assert "changed" not in task_results(first, target.name, "Build the image")


def test_pull_rerun_and_check_mode_change_nothing(target, pull_runs):
    for run in (pull_runs["again"], pull_runs["check_again"]):
        assert run.returncode == 0, run.stdout[-3000:]
        assert recap(run, target.name)["changed"] == 0
        assert f"current, not pulled: {pull_runs['ref']}" in host_output(run, target.name)
    # The report (built from the nanoclaw_agent_image fact) names the local image and its id.
    assert f"{target.local}:latest ({pull_runs['config_digest']})" in host_output(pull_runs["again"], target.name)
    # Not even a registry request: the local tag's RepoDigests decided.
    assert task_results(pull_runs["again"], target.name, "Look up the digest in the registry") in ([], ["skipping"])
    assert _latest(target) == pull_runs["config_digest"]


@pytest.fixture(scope="module")
def failing_pull_runs(pull_runs):
    before = {name: _latest(Target(name)) for name in TARGETS}
    cas = {name: _ca_dirs(Target(name)) for name in TARGETS}
    repository = pull_runs["ref"].split("@")[0]
    wrong = converge(TARGETS, _pull_vars(f"{repository}@{ABSENT_DIGEST}"))
    down = converge(TARGETS, _pull_vars(f"{DOWN}/{PULL_REPOSITORY}@{ABSENT_DIGEST}"))
    wrong_password = converge(
        TARGETS, _pull_vars(f"{repository}@{ABSENT_DIGEST}", nanoclaw_agent_image_registry_password="Wrong-Password-77c1")
    )
    after = {name: _latest(Target(name)) for name in TARGETS}
    cas_after = {name: _ca_dirs(Target(name)) for name in TARGETS}
    return before, after, cas, cas_after, wrong, down, wrong_password, repository


def _failed_naming_and_unchanged(proc, target, before: dict, after: dict, message: str) -> None:
    """The run failed on ``target`` with ``message``, reported nothing changed and left its images as they were."""
    assert proc.returncode != 0
    assert message in host_output(proc, target.name)
    assert recap(proc, target.name)["changed"] == 0
    assert after[target.name] == before[target.name]


def test_a_wrong_digest_fails_naming_the_variable_and_changes_nothing(target, failing_pull_runs):
    before, after, _cas, _cas_after, wrong, _down, _pw, repository = failing_pull_runs
    message = (
        f"nanoclaw_agent_image_pull_ref {repository}@{ABSENT_DIGEST} cannot be pulled: registry {PUSH.address} holds no manifest"
        f" {ABSENT_DIGEST} in {PULL_REPOSITORY}"
    )
    _failed_naming_and_unchanged(wrong, target, before, after, message)


def test_a_registry_that_is_down_fails_naming_the_variable_and_changes_nothing(target, failing_pull_runs):
    before, after, cas, cas_after, _wrong, down, _pw, _repository = failing_pull_runs
    message = f"nanoclaw_agent_image_pull_ref {DOWN}/{PULL_REPOSITORY}@{ABSENT_DIGEST} cannot be pulled: cannot reach registry {DOWN}"
    _failed_naming_and_unchanged(down, target, before, after, message)
    # Its CA was only lent to the check: no certs.d entry for the unreachable registry.
    assert DOWN not in cas_after[target.name]
    assert cas_after[target.name] == cas[target.name]


def test_wrong_credentials_fail_naming_the_registry_and_never_show(target, failing_pull_runs):
    before, after, _cas, _cas_after, _wrong, _down, wrong_password, _repository = failing_pull_runs
    message = f"cannot be pulled: registry {PUSH.address} rejected the credentials of user 'nanoclaw-ci'"
    _failed_naming_and_unchanged(wrong_password, target, before, after, message)
    assert "Wrong-Password-77c1" not in all_output(wrong_password)
    assert PASSWORD not in all_output(wrong_password)


@pytest.fixture(scope="module")
def refused_pull_inputs():
    # validate.yml reports every problem of the input at once: two runs cover four refusals.
    name = TARGETS[0]
    tag_and_push = converge(name, _pull_vars(f"{PUSH.address}/{PULL_REPOSITORY}:agent", nanoclaw_agent_image_push=True))
    no_registry = converge(name, _pull_vars(f"nanoclaw-agent@{ABSENT_DIGEST}", nanoclaw_agent_image_mode="pulled"))
    return name, tag_and_push, no_registry


def test_a_tag_and_other_bad_pull_input_are_refused_before_anything_changes(refused_pull_inputs):
    name, tag_and_push, no_registry = refused_pull_inputs
    out = all_output(tag_and_push)
    assert f'nanoclaw_agent_image_pull_ref "{PUSH.address}/{PULL_REPOSITORY}:agent" names a tag, not a digest' in out
    assert "nanoclaw_agent_image_push must be false with nanoclaw_agent_image_mode pull" in out
    out = all_output(no_registry)
    # The role's argument spec refuses it first (choices), naming the variable.
    assert "nanoclaw_agent_image_mode must be one of: build, pull, got: pulled" in out
    for proc in (tag_and_push, no_registry):
        assert proc.returncode != 0
        assert recap(proc, name)["changed"] == 0
        assert "Pull the image" not in proc.stdout


def test_a_reference_without_a_registry_is_refused():
    name = TARGETS[0]
    proc = converge(name, _pull_vars(f"nanoclaw-agent@{ABSENT_DIGEST}"))
    assert proc.returncode != 0
    assert f'nanoclaw_agent_image_pull_ref "nanoclaw-agent@{ABSENT_DIGEST}" is not <registry>/<repository>@sha256:' in all_output(proc)
    assert recap(proc, name)["changed"] == 0
