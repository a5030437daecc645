"""The EE harness: which collection content rebuilds the EE, and the inventory it derives."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tests.harness import ee


def _tarball(path: Path, files: dict[str, str], version: str = "0.1.0") -> Path:
    listing = {
        "files": [{"name": name, "ftype": "file", "chksum_type": "sha256", "chksum_sha256": digest} for name, digest in files.items()]
    }
    manifest = {"collection_info": {"namespace": "nanoclaw", "name": "provision", "version": version}}
    with tarfile.open(path, "w:gz") as tar:
        for name, content in (("FILES.json", listing), ("MANIFEST.json", manifest)):
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_content_key_follows_job_content_only(tmp_path: Path) -> None:
    base = {"roles/preflight/tasks/main.yml": "a", "plugins/modules/agent_smoke.py": "b", "tests/unit/x.py": "c", "docs/X.md": "d"}
    key = ee._content_key(_tarball(tmp_path / "a.tar.gz", base))
    assert ee._content_key(_tarball(tmp_path / "b.tar.gz", {**base, "tests/unit/x.py": "changed", "docs/X.md": "e"})) == key
    assert ee._content_key(_tarball(tmp_path / "c.tar.gz", {**base, "roles/preflight/tasks/main.yml": "changed"})) != key
    assert ee._content_key(_tarball(tmp_path / "d.tar.gz", {**base, "playbooks/site.yml": "new"})) != key
    assert ee._content_key(_tarball(tmp_path / "e.tar.gz", base, version="0.2.0")) != key


def test_inventory_vars_keep_the_variables_and_drop_how_to_connect(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(
        "---\nnanoclaw_hosts:\n  vars:\n    nanoclaw_runtime: podman\n    ansible_user: admin\n"
        "  hosts:\n    demo:\n      ansible_connection: containers.podman.podman\n      nanoclaw_preflight_concurrent_agents: 2\n"
    )
    assert ee._inventory_vars(tmp_path) == {"nanoclaw_runtime": "podman", "nanoclaw_preflight_concurrent_agents": 2}
