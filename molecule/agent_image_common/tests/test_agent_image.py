"""Verify nanoclaw.provision.agent_image against real engines and the harness's real registries.

Order matters: the first tests read what converge and idempotence left, the
later ones drive the role again through real ansible-playbook runs (bad
password, registry down, bad input, a new commit).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from conftest import ENGINE, INFO, PUSH, USER, converge, harness_registry, recap, record_timing, registry_json, registry_manifest

PASSWORD = Path(INFO["push"]["password_file"]).read_text().strip()


def test_image_is_in_the_engines_store_under_both_tags(target):
    tagged = target.image_id(f"{target.local}:{target.commit[:12]}")
    assert target.image_id(f"{target.local}:latest") == tagged


@pytest.mark.skipif(ENGINE != "podman", reason="Docker keeps one store, the daemon's")
def test_image_is_in_the_service_users_store_not_roots(target):
    assert target.engine(f"image exists {target.local}:latest").rc == 0
    assert target.host.run(f"podman image exists {target.local}:latest").rc == 1, "root's store has the image too"


def test_labels_record_commit_source_created_and_build_key(target):
    labels = target.inspect(f"{target.local}:latest")["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == target.commit
    assert labels["org.opencontainers.image.source"] == "file:///home/nanoclaw/nanoclaw"
    created = datetime.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
    assert 2020 < created.year < 2100
    assert re.fullmatch(r"[0-9a-f]{64}", labels["io.nanoclaw.provision.build-key"])
    assert labels["org.opencontainers.image.version"] == ("1.2.53" if target.generation == 1 else "2.0.64")


def test_build_arguments_reached_the_build_and_the_base_came_from_the_mirror(target):
    proc = target.engine(f"run --rm --network none {target.local}:latest")
    assert proc.rc == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    cjk = "true" if target.generation == 2 else "false"  # the converge sets it on Debian 13 only
    assert out["build"] == {"installCjkFonts": cjk, "note": f"built-by-{ENGINE}"}
    assert out["user"] == 1000  # the base's node user
    base = target.inspect(f"{target.local}:latest")["Config"]["Labels"]
    assert base["io.nanoclaw.provision.fixture"] == "true", "the base is not the mirror's node:22-slim stand-in"


def test_registry_catalog_and_tags_show_both_tags_with_one_digest(target):
    catalog = registry_json("/v2/_catalog?n=1000")["repositories"]
    assert target.repository in catalog
    tags = registry_json(f"/v2/{target.repository}/tags/list")["tags"]
    assert sorted(tags) == sorted([target.commit[:12], "latest"])
    _, by_commit, manifest = registry_manifest(target.repository, target.commit[:12])
    _, by_latest, _ = registry_manifest(target.repository, "latest")
    assert by_commit
    assert by_commit == by_latest
    assert manifest["config"]["digest"] == target.image_id(f"{target.local}:latest")


def test_pull_back_by_digest_into_a_clean_store(target, tmp_path):
    """A store that never saw the image (a throwaway one on the test machine) pulls it by digest."""
    _, digest, _ = registry_manifest(target.repository, "latest")
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(INFO["ca_file"], certs / "ca.crt")
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {PUSH.address: {"auth": _basic(INFO["push"]["username"], PASSWORD)}}}))
    auth.chmod(0o600)
    store = ["podman", "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "--storage-driver", "vfs"]
    try:
        ref = f"{PUSH.address}/{target.repository}@{digest}"
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


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_no_change_rerun_builds_and_pushes_nothing(target):
    ref = f"{target.local}:latest"
    before = target.inspect(ref)
    _, digest_before, _ = registry_manifest(target.repository, "latest")
    proc = converge(target.name)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc, target.name)["changed"] == 0
    assert "current, not rebuilt; registry already current" in proc.stdout
    after = target.inspect(ref)
    assert (after["Id"], after["Created"]) == (before["Id"], before["Created"]), "the image was rebuilt"
    assert registry_manifest(target.repository, "latest")[1] == digest_before
    record_timing(f"{target.name}: no-change rerun", proc.seconds)


def test_check_mode_on_a_current_host_reports_nothing_to_do(target):
    proc = converge(target.name, check=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc, target.name)["changed"] == 0


def test_wrong_password_fails_naming_the_registry_and_pushes_nothing(target):
    _, digest_before, _ = registry_manifest(target.repository, "latest")
    secret = "Wrong-Password-9f3a1c"
    proc = converge(target.name, {"nanoclaw_agent_image_registry_password": secret})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"registry {PUSH.address} rejected the credentials of user 'nanoclaw-ci'" in out
    assert "pushed " not in out
    assert secret not in out, "the password leaked into the output"
    assert recap(proc, target.name)["changed"] == 0
    assert registry_manifest(target.repository, "latest")[1] == digest_before


def test_registry_down_fails_clearly_and_a_rerun_after_it_is_up_pushes(target, spare_registry):
    address = spare_registry.address
    extra = {"nanoclaw_agent_image_registry": address}
    down = converge(target.name, extra)
    assert down.returncode != 0
    assert f"cannot reach registry {address}" in down.stdout + down.stderr
    harness_registry.start(spare_registry, fresh=True)
    up = converge(target.name, extra)
    assert up.returncode == 0, up.stdout[-3000:]
    assert f"pushed {target.commit[:12]}, latest" in up.stdout
    _, by_commit, manifest = registry_manifest(target.repository, target.commit[:12], reg=spare_registry)
    assert by_commit
    assert manifest["config"]["digest"] == target.image_id(f"{target.local}:latest")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"nanoclaw_agent_image_registry_insecure": True, "nanoclaw_agent_image_registry": "registry.example.com:5000"},
            "nanoclaw_agent_image_registry_insecure is true but registry.example.com:5000 is not a loopback registry",
        ),
        (
            {"nanoclaw_agent_image_registry": "https://127.0.0.1:5443/x"},
            'nanoclaw_agent_image_registry "https://127.0.0.1:5443/x" is not host or host:port',
        ),
        ({"nanoclaw_agent_image_build_args": {"INSTALL_CJK_FONTS": "true"}}, "use nanoclaw_agent_image_install_cjk_fonts"),
        ({"nanoclaw_agent_image_project_dir": "/nonexistent"}, "/nonexistent/container/Dockerfile does not exist"),
    ],
    ids=["insecure-remote", "registry-url", "cjk-build-arg", "no-checkout"],
)
def test_bad_input_fails_naming_the_variable_and_changes_nothing(target, extra, message):
    proc = converge(target.name, extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out
    assert recap(proc, target.name)["changed"] == 0


def test_a_new_commit_rebuilds_once_and_pushes_both_tags(target):
    old_commit = target.commit
    old_id = target.image_id(f"{target.local}:latest")
    new_commit = target.commit_change(f"bump-{os.getpid()}")
    proc = converge(target.name)
    assert proc.returncode == 0, proc.stdout[-3000:]
    record_timing(f"{target.name}: one-commit rebuild", proc.seconds)
    assert f"built; pushed {new_commit[:12]}, latest" in proc.stdout
    new_id = target.image_id(f"{target.local}:latest")
    assert new_id != old_id
    assert target.inspect(f"{target.local}:latest")["Config"]["Labels"]["org.opencontainers.image.revision"] == new_commit
    tags = registry_json(f"/v2/{target.repository}/tags/list")["tags"]
    assert sorted(tags) == sorted([old_commit[:12], new_commit[:12], "latest"])
    _, by_new, manifest = registry_manifest(target.repository, new_commit[:12])
    assert by_new == registry_manifest(target.repository, "latest")[1]
    assert manifest["config"]["digest"] == new_id
    again = converge(target.name)
    assert again.returncode == 0, again.stdout[-3000:]
    assert recap(again, target.name)["changed"] == 0
    assert target.image_id(f"{target.local}:latest") == new_id


def test_the_service_user_owns_the_credentials_file_0600(target):
    if ENGINE != "podman":
        pytest.skip("Docker keeps the credentials in root's ~/.docker/config.json")
    f = target.host.file(f"/home/{USER}/.config/nanoclaw-agent-image/auth.json")
    assert f.user == USER
    assert f.mode == 0o600
    assert target.host.file(f"/home/{USER}/.config/nanoclaw-agent-image").mode == 0o700
