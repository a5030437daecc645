"""nanoclaw role, tasks/node_tarball.yml for real on this machine (into a temporary directory).

Official Node.js tarballs carry their builder's uid/gid (1001/500); tar run by root keeps them
unless told otherwise, so whoever has uid 1001 on the host would own the `node` that root and
the service run (issue 16.2). The FIXTURE tarball here has the official layout
(node-vX-linux-x64/{bin,include,lib}) with members owned by 1001:500 and a group-writable node.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from tests.unit.roles.playbook import flat, run_playbook

TOP = "node-v22.99.0-linux-x64"
PLAY = """---
- name: Node.js from a checksummed tarball (the nanoclaw role's tasks)
  hosts: all
  gather_facts: false
  tasks:
    - name: Unpack it
      ansible.builtin.include_role:
        name: nanoclaw.provision.nanoclaw
        tasks_from: node_tarball.yml
"""


def _tarball(path: Path) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, mode, data in (
            (f"{TOP}/bin/node", 0o775, b"#!/bin/sh\necho v22.99.0\n"),
            (f"{TOP}/include/node/node.h", 0o664, b"/* header */\n"),
            (f"{TOP}/lib/node_modules/npm/bin/npm-cli.js", 0o775, b"// npm\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), mode, 1001, 500, "build", "build"
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{TOP}/bin/npm")
        link.type, link.linkname, link.uid, link.gid = tarfile.SYMTYPE, "../lib/node_modules/npm/bin/npm-cli.js", 1001, 500
        tar.addfile(link)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unpacked_node_is_owned_by_root_whatever_the_tarball_says(tmp_path, needs_root):
    tarball = tmp_path / "mirror" / f"{TOP}.tar.gz"
    tarball.parent.mkdir()
    digest = _tarball(tarball)
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    dest = tmp_path / "opt-node"
    variables = {
        "nanoclaw_node_tarball_url": f"file://{tarball}",
        "nanoclaw_node_tarball_checksum": f"sha256:{digest}",
        "nanoclaw_node_tarball_dir": str(dest),
    }
    first = run_playbook(play, variables)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    owners = {p.relative_to(dest): (p.lstat().st_uid, p.lstat().st_gid) for p in (dest / TOP).rglob("*")}
    assert owners, "nothing was unpacked"
    assert set(owners.values()) == {(0, 0)}, owners
    assert (dest / TOP / "bin" / "node").stat().st_mode & 0o022 == 0, "group/other may write the node binary"
    assert (dest / "current").resolve() == dest / TOP
    again = run_playbook(play, variables)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in flat(again.stdout), again.stdout[-2000:]


def test_a_tree_an_earlier_version_unpacked_with_the_tarballs_owners_is_given_to_root(tmp_path, needs_root):
    tarball = tmp_path / f"{TOP}.tar.gz"
    digest = _tarball(tarball)
    dest = tmp_path / "opt-node"
    dest.mkdir()
    with tarfile.open(tarball) as tar:  # what `unarchive` as root did before: owners kept
        tar.extractall(dest, filter="fully_trusted")
    assert (dest / TOP / "bin" / "node").stat().st_uid == 1001
    (dest / tarball.name).write_bytes(tarball.read_bytes())
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    result = run_playbook(
        play,
        {
            "nanoclaw_node_tarball_url": f"file://{tarball}",
            "nanoclaw_node_tarball_checksum": f"sha256:{digest}",
            "nanoclaw_node_tarball_dir": str(dest),
        },
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert {p.lstat().st_uid for p in (dest / TOP).rglob("*")} == {0}
