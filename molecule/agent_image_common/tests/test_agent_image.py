"""Verify nanoclaw.provision.agent_image against real engines and the harness's real registries.

The first tests read what converge and idempotence left. Then each module-scoped
run fixture drives the role once on every target at the same time (real
ansible-playbook runs with other input): a no-change rerun, a check-mode run, the
nanoclaw role's result as input, a wrong password, bad input, and finally a new
commit while the registry is down and again after it is back up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
from conftest import (
    ENGINE,
    FIXTURE,
    INFO,
    PUSH,
    TARGETS,
    USER,
    Target,
    all_output,
    converge,
    harness_registry,
    host_output,
    recap,
    record_timing,
    registry_json,
    registry_manifest,
    task_results,
)

from tests.harness import services as harness_services

PASSWORD = Path(INFO["push"]["password_file"]).read_text().strip()
WRONG_PASSWORD = "Wrong-Password-9f3a1c"


def _state(target: Target) -> dict:
    image = target.inspect(f"{target.local}:latest")
    return {
        "commit": target.commit,
        "id": image["Id"],
        "created": image["Created"],
        "digest": registry_manifest(target.repository, "latest")[1],
        "tags": sorted(registry_json(f"/v2/{target.repository}/tags/list")["tags"]),
    }


# ---------------------------------------------------------------- what converge left
def test_image_is_in_the_engines_store_under_both_tags(target):
    tagged = target.image_id(f"{target.local}:{target.commit[:12]}")
    assert target.image_id(f"{target.local}:latest") == tagged


def test_image_is_in_the_service_users_store_not_roots(target):
    if ENGINE == "podman":
        assert target.engine(f"image exists {target.local}:latest").rc == 0
        assert target.host.run(f"podman image exists {target.local}:latest").rc == 1, "root's store has the image too"
    else:
        # Docker keeps one store, the daemon's: the service user reaches it
        # through the docker group, and has no rootless store of its own.
        as_user = target.host.run(f"runuser -u {USER} -- docker image inspect --format '{{{{.Id}}}}' {target.local}:latest")
        assert as_user.rc == 0, as_user.stderr
        assert "sha256:" + as_user.stdout.strip().removeprefix("sha256:") == target.image_id(f"{target.local}:latest")
        assert not target.host.file(f"/home/{USER}/.local/share/docker").exists


def test_labels_record_commit_source_created_and_build_key(target):
    labels = target.inspect(f"{target.local}:latest")["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == target.commit
    assert labels["org.opencontainers.image.source"] == "file:///home/nanoclaw/nanoclaw"
    created = datetime.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
    assert 2020 < created.year < 2100
    assert re.fullmatch(r"[0-9a-f]{64}", labels["io.nanoclaw.provision.build-key"])
    assert labels["org.opencontainers.image.version"] == ("1.2.53" if target.generation == 1 else "2.0.64")


def test_build_arguments_reached_the_build_and_the_base_came_from_the_mirror(target):
    # Read what the fixture's RUN step recorded from the image's filesystem. Not
    # `podman run`: rootless runc cannot start containers on the nested cgroup v1
    # Debian 12 target ("error mounting cgroup ... podman-N.scope"), a limit of
    # the stand-in runtime setup, while builds (RUN steps) work there.
    if ENGINE == "podman":
        ref = f"{target.local}:latest"
        proc = target.engine(f"unshare sh -c 'cat \"$(podman image mount {ref})/app/build.json\"; podman image unmount {ref} >/dev/null'")
    else:
        proc = target.engine(f"run --rm --network none --entrypoint cat {target.local}:latest /app/build.json")
    assert proc.rc == 0, proc.stderr
    build = json.loads(proc.stdout.strip().splitlines()[-1])
    cjk = "true" if target.generation == 2 else "false"  # the converge sets it on Debian 13 only
    assert build == {"installCjkFonts": cjk, "note": f"built-by-{ENGINE}"}
    config = target.inspect(f"{target.local}:latest")["Config"]
    assert config["User"] == "node"
    assert config["Labels"]["io.nanoclaw.provision.fixture"] == "true", "the base is not the mirror's node:22-slim stand-in"


def test_registry_catalog_and_tags_show_both_tags_with_one_digest(target):
    catalog = registry_json("/v2/_catalog?n=1000")["repositories"]
    assert target.repository in catalog
    tags = registry_json(f"/v2/{target.repository}/tags/list")["tags"]
    assert sorted(tags) == sorted([target.commit[:12], "latest"])
    by_commit, manifest = registry_manifest(target.repository, target.commit[:12])[1:]
    by_latest = registry_manifest(target.repository, "latest")[1]
    assert by_commit
    assert by_commit == by_latest
    assert manifest["config"]["digest"] == target.image_id(f"{target.local}:latest")


def test_pull_back_by_digest_into_a_clean_store(target, tmp_path):
    """A store that never saw the image (a throwaway one on the test machine) pulls it by digest."""
    digest = registry_manifest(target.repository, "latest")[1]
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(INFO["ca_file"], certs / "ca.crt")
    auth = tmp_path / "auth.json"
    token = base64.b64encode(f"{INFO['push']['username']}:{PASSWORD}".encode()).decode()
    auth.write_text(json.dumps({"auths": {PUSH.address: {"auth": token}}}))
    auth.chmod(0o600)
    # Podman refuses a runroot longer than 50 characters: pytest's tmp_path is too long for it.
    runroot = tempfile.mkdtemp(prefix="nc-pull-", dir="/tmp")
    store = ["podman", "--root", str(tmp_path / "root"), "--runroot", runroot, "--storage-driver", "vfs"]
    ref = f"{PUSH.address}/{target.repository}@{digest}"
    try:
        pulled = subprocess.run(
            [*store, "pull", "-q", "--cert-dir", str(certs), "--authfile", str(auth), ref], capture_output=True, text=True, check=False
        )
        assert pulled.returncode == 0, pulled.stderr
        image_id = subprocess.run([*store, "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True, check=True)
        assert "sha256:" + image_id.stdout.strip() == target.image_id(f"{target.local}:latest")
    finally:
        # Only this throwaway store: never `system reset`, which also drops the machine's podman networks.
        subprocess.run([*store, "rmi", "-af"], capture_output=True, check=False)
        shutil.rmtree(tmp_path / "root", ignore_errors=True)
        shutil.rmtree(runroot, ignore_errors=True)


def test_the_registry_credentials_are_gone_after_the_push(target):
    """Issue 16.9: after pushing, the host keeps no registry credentials (nanoclaw_agent_image_registry_keep_credentials)."""
    if ENGINE == "podman":
        assert not target.host.file(f"/home/{USER}/.config/nanoclaw-agent-image/auth.json").exists
        assert target.host.file(f"/home/{USER}/.config/nanoclaw-agent-image").mode == 0o700
    else:
        # docker_login stored them for root, who pushes through the daemon; logged out again.
        f = target.host.file("/root/.docker/config.json")
        auths = json.loads(f.content_string).get("auths", {}) if f.exists else {}
        assert PUSH.address not in auths, auths
        assert not target.host.file(f"/home/{USER}/.docker/config.json").exists


# ---------------------------------------------------------------- a no-change rerun
@pytest.fixture(scope="module")
def no_change_run():
    before = {name: _state(Target(name)) for name in TARGETS}
    proc = converge(TARGETS)
    record_timing("no-change rerun (all targets in parallel)", proc.seconds)
    after = {name: _state(Target(name)) for name in TARGETS}
    return proc, before, after


def test_no_change_rerun_builds_and_pushes_nothing(target, no_change_run):
    proc, before, after = no_change_run
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc, target.name)["changed"] == 0
    assert "current, not rebuilt; registry already current" in host_output(proc, target.name)
    assert after[target.name] == before[target.name], "the image was rebuilt or pushed"


@pytest.fixture(scope="module")
def check_run():
    return converge(TARGETS, check=True)


def test_check_mode_on_a_current_host_reports_nothing_to_do(target, check_run):
    assert check_run.returncode == 0, check_run.stdout[-3000:]
    assert recap(check_run, target.name)["changed"] == 0


# ---------------------------------------------------------------- the nanoclaw role's result as input
@pytest.fixture(scope="module")
def install_run():
    """The role given the checkout as the nanoclaw role exports it (nanoclaw_install, as
    playbooks/tasks/image.yml passes it), generation spelled v1/v2, reads no commit, package.json
    or path of its own."""
    installs = {}
    for name in TARGETS:
        t = Target(name)
        root = t.host.check_output(f"realpath {FIXTURE}")
        installs[name] = {
            "present": True,
            "root": root,
            "commit": t.commit,
            "version": "1.2.53" if t.generation == 1 else "2.0.64",
            "generation": f"v{t.generation}",
            "slug": hashlib.sha1(root.encode()).hexdigest()[:8],
            "origin": "",  # the fixture checkout has no remote
        }
    before = {name: _state(Target(name)) for name in TARGETS}
    # One run per target (each its own install: -e JSON is not templated), side by side.
    with ThreadPoolExecutor(max_workers=len(TARGETS)) as pool:
        futures = {name: pool.submit(converge, name, {"nanoclaw_agent_image_install": installs[name]}) for name in TARGETS}
        runs = {name: future.result() for name, future in futures.items()}
    after = {name: _state(Target(name)) for name in TARGETS}
    return runs, before, after


def test_the_nanoclaw_roles_result_names_keys_and_labels_the_image_as_the_checkout_does(target, install_run):
    runs, before, after = install_run
    proc = runs[target.name]
    assert proc.returncode == 0, proc.stdout[-3000:]
    # The same name, tag and build key as reading the checkout: nothing to build or push.
    assert recap(proc, target.name)["changed"] == 0
    assert "current, not rebuilt; registry already current" in host_output(proc, target.name)
    assert after[target.name] == before[target.name]
    assert task_results(proc, target.name, "Read the commit, the physical path and the build context hash") == ["skipping"]
    assert task_results(proc, target.name, "Read package.json") == ["skipping"]
    # container/ may hold uncommitted files: its hash is still read.
    assert task_results(proc, target.name, "Hash the build context") == ["ok"]


# ---------------------------------------------------------------- wrong password
@pytest.fixture(scope="module")
def wrong_password_run():
    before = {name: _state(Target(name)) for name in TARGETS}
    proc = converge(TARGETS, {"nanoclaw_agent_image_registry_password": WRONG_PASSWORD})
    after = {name: _state(Target(name)) for name in TARGETS}
    return proc, before, after


def test_wrong_password_fails_naming_the_registry_and_pushes_nothing(target, wrong_password_run):
    proc, before, after = wrong_password_run
    out = host_output(proc, target.name)
    assert proc.returncode != 0
    assert f"registry {PUSH.address} rejected the credentials of user 'nanoclaw-ci'" in out
    assert "pushed " not in out
    assert recap(proc, target.name)["changed"] == 0
    assert after[target.name] == before[target.name]


def test_the_password_never_shows_in_the_output(wrong_password_run):
    proc = wrong_password_run[0]
    assert WRONG_PASSWORD not in all_output(proc)
    assert PASSWORD not in all_output(proc)


# ---------------------------------------------------------------- bad input (one target: the messages do not depend on it)
@pytest.fixture(scope="module")
def bad_input_runs():
    name = TARGETS[0]
    invalid = converge(
        name,
        {
            "nanoclaw_agent_image_registry_insecure": True,
            "nanoclaw_agent_image_registry": "registry.example.com:5000",
            "nanoclaw_agent_image_build_args": {"INSTALL_CJK_FONTS": "true", "bad-name": "x"},
            "nanoclaw_agent_image_commit_tag_length": 3,
        },
    )
    no_checkout = converge(name, {"nanoclaw_agent_image_project_dir": "/nonexistent"})
    bad_url = converge(name, {"nanoclaw_agent_image_registry": "https://127.0.0.1:5443/x"})
    return name, invalid, no_checkout, bad_url


def test_bad_input_fails_naming_every_variable_and_changes_nothing(bad_input_runs):
    name, invalid, no_checkout, bad_url = bad_input_runs
    out = all_output(invalid)
    assert invalid.returncode != 0
    for message in (
        "nanoclaw_agent_image_registry_insecure is true but registry.example.com:5000 is not a loopback registry",
        "nanoclaw_agent_image_build_args must not set INSTALL_CJK_FONTS: use nanoclaw_agent_image_install_cjk_fonts",
        "nanoclaw_agent_image_build_args has invalid argument names: bad-name",
        "nanoclaw_agent_image_commit_tag_length must be between 7 and 40, got 3",
    ):
        assert message in out
    assert "/nonexistent/container/Dockerfile does not exist" in all_output(no_checkout)
    assert 'nanoclaw_agent_image_registry "https://127.0.0.1:5443/x" is not host or host:port' in all_output(bad_url)
    for proc in (invalid, no_checkout, bad_url):
        assert proc.returncode != 0
        assert recap(proc, name)["changed"] == 0


# ---------------------------------------------------------------- a new commit while the registry is down, then up
@pytest.fixture(scope="module")
def new_commit_runs():
    if not (harness_services.PIDFILES / f"{PUSH.daemon}.pid").exists():
        pytest.skip("the push registry was not started by this checkout's harness run, so this test may not stop it")
    before = {name: _state(Target(name)) for name in TARGETS}
    for name in TARGETS:
        Target(name).commit_change("bump")
    harness_services.stop_daemon(PUSH.daemon)
    try:
        down = converge(TARGETS)
        after_down = {name: Target(name).inspect(f"{Target(name).local}:latest")["Id"] for name in TARGETS}
    finally:
        harness_registry.start(PUSH)
    up = converge(TARGETS)
    record_timing("one-commit rebuild + push (all targets in parallel)", up.seconds)
    after = {name: _state(Target(name)) for name in TARGETS}
    again = converge(TARGETS)
    return before, down, after_down, up, after, again


def test_registry_down_fails_clearly_and_builds_nothing(target, new_commit_runs):
    before, down, after_down = new_commit_runs[:3]
    assert down.returncode != 0
    assert f"cannot reach registry {PUSH.address}" in host_output(down, target.name)
    assert recap(down, target.name)["changed"] == 0
    assert after_down[target.name] == before[target.name]["id"]


def test_a_new_commit_rebuilds_once_and_pushes_both_tags_once_the_registry_is_up(target, new_commit_runs):
    before, up, after, again = (new_commit_runs[i] for i in (0, 3, 4, 5))
    old, new = before[target.name], after[target.name]
    assert up.returncode == 0, up.stdout[-3000:]
    out = host_output(up, target.name)
    assert f"built; pushed {new['commit'][:12]}, latest" in out
    # The engine's own build and push tasks (rootless Podman: "... as <user>"; Docker: "... with Docker").
    verb = "as" if ENGINE == "podman" else "with Docker"
    # Docker has one build task per builder (classic, buildx, the CLI's BuildKit): one of them ran.
    assert [s for s in task_results(up, target.name, f"Build the image {verb}") if s != "skipping"] == ["changed"]
    assert task_results(up, target.name, f"Push the image {verb}") == ["changed", "changed"]
    assert new["commit"] != old["commit"]
    assert new["id"] != old["id"]
    assert new["tags"] == sorted([old["commit"][:12], new["commit"][:12], "latest"])
    by_new, manifest = registry_manifest(target.repository, new["commit"][:12])[1:]
    assert by_new == new["digest"] != old["digest"]
    assert manifest["config"]["digest"] == target.image_id(f"{target.local}:latest")
    labels = target.inspect(f"{target.local}:latest")["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == new["commit"]
    assert again.returncode == 0, again.stdout[-3000:]
    assert recap(again, target.name)["changed"] == 0
